"""The weight-decay mask: which parameters decay, and that optax honours it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mamba_jax.baselines import S4DModel
from mamba_jax.models import MambaLM
from mamba_jax.optim import weight_decay_mask
from tests.mamba_jax.helpers import tiny_config


def _named_mask(model):
  mask = weight_decay_mask(nnx.as_pure(nnx.state(model, nnx.Param)))
  return {
    jax.tree_util.keystr(path): value for path, value in jax.tree_util.tree_leaves_with_path(mask)
  }


def test_mask_of_a_mamba_lm():
  config = tiny_config(
    n_layers=1, vocab_size=10, bias=True, discretization="length_adaptive", length_ref=8.0
  )
  mask = _named_mask(MambaLM(config, rngs=nnx.Rngs(0)))
  layer = "['backbone']['layers'][0]"
  decays = {
    f"{layer}['mixer']['{name}']['kernel']" for name in ("in_proj", "x_proj", "dt_proj", "out_proj")
  }
  decays |= {f"{layer}['mixer']['conv1d']['weight']", "['embedding']['embedding']"}
  assert {name for name, value in mask.items() if value} == decays
  for name in (
    "['mixer']['A_log']",
    "['mixer']['D']",
    "['mixer']['dt_bias']",
    "['mixer']['discretization']['alpha']",
    "['mixer']['in_proj']['bias']",
    "['mixer']['conv1d']['bias']",
    "['norm']['weight']",
  ):
    assert mask[layer + name] is False, name
  assert mask["['backbone']['norm_f']['weight']"] is False


def test_stacked_layers_take_the_mask_of_one_layer():
  """The leading layer axis of scan_layers=True does not make vectors into matrices."""
  config = dict(
    n_layers=2, vocab_size=10, bias=True, discretization="length_adaptive", length_ref=8.0
  )
  per_layer = _named_mask(MambaLM(tiny_config(scan_layers=False, **config), rngs=nnx.Rngs(0)))
  stacked = _named_mask(MambaLM(tiny_config(scan_layers=True, **config), rngs=nnx.Rngs(0)))
  for layer in ("['layers'][0]", "['layers'][1]"):
    assert {
      name.replace(layer, "['stacked_layers']"): value
      for name, value in per_layer.items()
      if "['layers']" not in name or layer in name
    } == stacked


def test_mask_of_s4d_keeps_ssm_dynamics_out():
  mask = _named_mask(S4DModel(2, 2, d_model=8, n_layers=1, d_state=4, rngs=nnx.Rngs(0)))
  assert not mask["['layers'][0]['A_log']"] and not mask["['layers'][0]['ssm_B']"]
  assert not mask["['layers'][0]['log_dt']"] and mask["['layers'][0]['ssm_C']"]
  lin = S4DModel(2, 2, d_model=8, n_layers=1, d_state=4, kernel="fft", init="lin", rngs=nnx.Rngs(0))
  mask = _named_mask(lin)
  assert not mask["['layers'][0]['A_log']"] and not mask["['layers'][0]['A_imag']"]
  assert mask["['layers'][0]['ssm_C']"] and not mask["['layers'][0]['D']"]


def test_adamw_decays_only_masked_parameters():
  model = MambaLM(tiny_config(n_layers=1, vocab_size=10), rngs=nnx.Rngs(0))
  before = nnx.as_pure(nnx.state(model, nnx.Param))
  optimizer = nnx.Optimizer(
    model, optax.adamw(0.1, weight_decay=0.5, mask=weight_decay_mask), wrt=nnx.Param
  )
  zero_grads = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
  optimizer.update(model, zero_grads)
  after = nnx.as_pure(nnx.state(model, nnx.Param))
  mask = weight_decay_mask(before)

  def check(decays, old, new):
    if decays:
      np.testing.assert_allclose(new, old * (1 - 0.1 * 0.5), rtol=1e-6)
    else:
      np.testing.assert_array_equal(new, old)

  jax.tree.map(check, mask, before, after)
