"""Stacked layers under nnx.scan (MambaConfig.scan_layers) against the per-layer Python loop.

The same parameters must give the same outputs, residual streams, gradients and decode states in
both layouts; `stack_layers` / `unstack_layers` carry parameters (and checkpoints) across.
"""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from mamba_jax import decode
from mamba_jax.block import LayerCache
from mamba_jax.models import MambaLM, MambaModel, count_parameters, stack_layers, unstack_layers
from tests.mamba_jax.helpers import tiny_config

# The two layouts run the same float32 arithmetic in a different program (loop vs scan), so
# they agree to rounding, far inside the project's float32 tolerances.
TIGHT = dict(rtol=1e-5, atol=1e-6)
N_LAYERS = 3


def _config(scan_layers, **overrides):
  fields = dict(
    n_layers=N_LAYERS,
    discretization="length_adaptive",
    length_ref=6.0,
    vocab_size=13,
    dt_min=0.05,
    dt_max=0.5,
    scan_layers=scan_layers,
  )
  fields.update(overrides)
  return tiny_config(**fields)


def _pair(kind="continuous", seed=0, **overrides):
  """(per-layer model, stacked model) with the same parameters: the stacked one is loaded from
  the per-layer one's state, whose length-adaptive alphas are set to non-zero values."""
  build = (
    (lambda c, s: MambaModel(c, 3, 2, rngs=nnx.Rngs(s)))
    if kind == "continuous"
    else (lambda c, s: MambaLM(c, rngs=nnx.Rngs(s)))
  )
  loop = build(_config(False, **overrides), seed)
  for index, layer in enumerate(loop.backbone.layers):
    alpha = layer.mixer.discretization.alpha
    alpha[...] = jax.random.uniform(jax.random.key(index), alpha.shape, minval=-1.0, maxval=1.0)
  scanned = build(_config(True, **overrides), seed + 1)
  nnx.update(scanned, stack_layers(nnx.state(loop)))
  return loop, scanned


def _inputs(kind, length=9):
  if kind == "continuous":
    return jax.random.normal(jax.random.key(5), (3, length, 3))
  return jax.random.randint(jax.random.key(5), (3, length), 0, 13)


def _assert_trees_close(actual, expected, **tolerance):
  jax.tree.map(
    lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), **(tolerance or TIGHT)),
    actual,
    expected,
  )


def test_auto_layout_and_same_initial_parameters_from_the_same_seed():
  assert not tiny_config(n_layers=7).resolved_scan_layers
  assert tiny_config(n_layers=8).resolved_scan_layers
  loop = MambaModel(_config(False), 3, 2, rngs=nnx.Rngs(0))
  scanned = MambaModel(_config(True), 3, 2, rngs=nnx.Rngs(0))
  assert not hasattr(scanned.backbone, "layers") and not hasattr(loop.backbone, "stacked_layers")
  assert scanned.backbone.stacked_layers.mixer.in_proj.kernel.shape == (N_LAYERS, 8, 32)
  assert count_parameters(loop) == count_parameters(scanned)
  jax.tree.map(np.testing.assert_array_equal, stack_layers(nnx.state(loop)), nnx.state(scanned))
  jax.tree.map(np.testing.assert_array_equal, unstack_layers(nnx.state(scanned)), nnx.state(loop))


@pytest.mark.parametrize("kind", ["continuous", "tokens"])
def test_same_outputs_with_lengths_left_pad_and_sequence_length(kind):
  loop, scanned = _pair(kind)
  inputs = _inputs(kind)
  lengths, left_pad = jnp.array([9, 5, 1]), jnp.array([0, 3, 8])
  for kwargs in (
    dict(),
    dict(lengths=lengths),
    dict(left_pad=left_pad),
    dict(lengths=lengths, sequence_length=jnp.array([20.0, 7.0, 3.0])),
  ):
    np.testing.assert_allclose(scanned(inputs, **kwargs), loop(inputs, **kwargs), **TIGHT)


def test_same_residual_streams_for_probing():
  loop, scanned = _pair()
  inputs = _inputs("continuous")
  out_loop, streams_loop = loop(inputs, return_residuals=True)
  out_scanned, streams_scanned = scanned(inputs, return_residuals=True)
  assert len(streams_scanned) == N_LAYERS + 1
  np.testing.assert_allclose(out_scanned, out_loop, **TIGHT)
  _assert_trees_close(streams_scanned, streams_loop)
  np.testing.assert_array_equal(scanned.read_out_residual(streams_scanned[-1]), out_scanned)


@pytest.mark.parametrize("remat", [False, True])
def test_same_loss_and_gradients(remat):
  loop, scanned = _pair(remat=remat)
  x, lengths = _inputs("continuous"), jnp.array([9, 6, 2])

  @nnx.jit
  def value_and_grad(model):
    return nnx.value_and_grad(lambda model: jnp.sum(model(x, lengths) ** 2))(model)

  (loss_loop, grads_loop), (loss_scanned, grads_scanned) = map(value_and_grad, (loop, scanned))
  np.testing.assert_allclose(loss_scanned, loss_loop, **TIGHT)
  _assert_trees_close(unstack_layers(grads_scanned), grads_loop, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["continuous", "tokens"])
def test_same_decode_with_stacked_caches(kind):
  loop, scanned = _pair(kind)
  inputs = _inputs(kind)
  prefill = nnx.jit(
    lambda model, x: model.prefill(x, lengths=jnp.array([6, 4, 1]), sequence_length=12.0)
  )
  step = nnx.jit(lambda model, x, cache: model.step(x, cache))
  (out_loop, cache_loop), (out_scanned, cache_scanned) = (
    prefill(m, inputs[:, :6]) for m in (loop, scanned)
  )
  np.testing.assert_allclose(out_scanned, out_loop, **TIGHT)
  assert isinstance(cache_scanned.layers, LayerCache)
  assert cache_scanned.layers.ssm_state.shape == (N_LAYERS, 3, 16, 4)
  for t in range(6, 9):
    out_loop, cache_loop = step(loop, inputs[:, t], cache_loop)
    out_scanned, cache_scanned = step(scanned, inputs[:, t], cache_scanned)
    np.testing.assert_allclose(out_scanned, out_loop, **TIGHT)
  stacked_loop_caches = jax.tree.map(lambda *xs: jnp.stack(xs), *cache_loop.layers)
  _assert_trees_close(cache_scanned.layers, stacked_loop_caches)
  empty = scanned.init_cache(3, sequence_length=12.0)
  assert jax.tree.map(jnp.shape, empty.layers) == jax.tree.map(jnp.shape, cache_scanned.layers)
  assert not any(np.any(np.asarray(x)) for x in jax.tree.leaves(empty.layers))
  if kind == "tokens":
    generate = lambda model: decode.generate(model, inputs[:, :4], max_new_tokens=5, temperature=0)
    tokens = generate(scanned)
    assert tokens.shape == (3, 5)
    np.testing.assert_array_equal(tokens, generate(loop))


def test_checkpoint_restores_under_its_own_layout_and_converts(tmp_path):
  loop, scanned = _pair(seed=3)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "loop", nnx.state(loop, nnx.Param))
  checkpointer.wait_until_finished()
  fresh_loop = nnx.eval_shape(lambda: MambaModel(_config(False), 3, 2, rngs=nnx.Rngs(0)))
  restored = checkpointer.restore(tmp_path / "loop", nnx.state(fresh_loop, nnx.Param))
  jax.tree.map(np.testing.assert_array_equal, restored, nnx.state(loop, nnx.Param))
  stacked_target = nnx.state(
    nnx.eval_shape(lambda: MambaModel(_config(True), 3, 2, rngs=nnx.Rngs(0))), nnx.Param
  )
  with pytest.raises(ValueError, match="stacked_layers"):  # restores only under its layout
    checkpointer.restore(tmp_path / "loop", stacked_target)
  fresh_scanned = MambaModel(_config(True), 3, 2, rngs=nnx.Rngs(9))
  nnx.update(fresh_scanned, stack_layers(restored))
  inputs = _inputs("continuous")
  np.testing.assert_allclose(fresh_scanned(inputs), loop(inputs), **TIGHT)
  pure = stack_layers(nnx.to_pure_dict(restored))  # plain nested dicts convert as well
  jax.tree.map(np.testing.assert_array_equal, pure, nnx.to_pure_dict(nnx.state(scanned, nnx.Param)))
