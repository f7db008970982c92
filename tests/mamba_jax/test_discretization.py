"""Fixed vs length-adaptive step: identical at init, scaled by (L / L_ref) ** -alpha after."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mamba_jax.discretization import Discretization, resolve_sequence_length
from mamba_jax.models import MambaModel
from mamba_jax_kernels.selective_scan import softplus
from tests.mamba_jax.helpers import assert_close, tiny_config


def _adaptive(**overrides):
  return tiny_config(discretization="length_adaptive", length_ref=16.0, **overrides)


def _set_alpha(model, value):
  for layer in model.backbone.layers:
    alpha = layer.mixer.discretization.alpha
    alpha[...] = jnp.broadcast_to(jnp.asarray(value, jnp.float32), alpha.shape)


def test_fixed_hands_raw_dt_and_bias_to_the_op():
  discretization = Discretization(tiny_config())
  dt, bias = jnp.ones((1, 2, 16)), jnp.full((16,), -3.0)
  args = discretization.scan_arguments(dt, bias)
  assert args["delta"] is dt and args["delta_bias"] is bias and args["delta_softplus"]
  assert discretization.alpha is None


def test_length_adaptive_applies_softplus_then_scales():
  discretization = Discretization(_adaptive())
  alpha = jnp.linspace(-1.0, 2.0, 16)
  discretization.alpha[...] = alpha
  dt = jax.random.normal(jax.random.key(0), (2, 3, 16))
  bias = jnp.linspace(-5.0, 1.0, 16)
  L = jnp.array([4.0, 64.0])
  args = discretization.scan_arguments(dt, bias, L)
  assert args["delta_bias"] is None and not args["delta_softplus"]
  expected = softplus(dt + bias) * (L[:, None, None] / 16.0) ** (-alpha)
  assert_close(args["delta"], expected, rtol=1e-6, atol=1e-7)


def test_alpha_one_makes_decay_over_the_sequence_independent_of_length():
  discretization = Discretization(_adaptive())
  discretization.alpha[...] = jnp.ones(16)
  dt, bias = jax.random.normal(jax.random.key(1), (1, 1, 16)), jnp.zeros(16)
  totals = [discretization.step_size(dt, bias, jnp.array([L])) * L for L in (3.0, 16.0, 500.0)]
  assert_close(totals[0], totals[1], rtol=1e-6, atol=0)
  assert_close(totals[2], totals[1], rtol=1e-6, atol=0)


def test_sequence_length_resolution_order():
  lengths = jnp.array([3, 5])
  np.testing.assert_array_equal(resolve_sequence_length(None, None, 2, 9), [9.0, 9.0])
  np.testing.assert_array_equal(resolve_sequence_length(None, lengths, 2, 9), [3.0, 5.0])
  np.testing.assert_array_equal(resolve_sequence_length(7, lengths, 2, 9), [7.0, 7.0])


def test_length_adaptive_equals_fixed_at_init():
  x = jax.random.normal(jax.random.key(2), (2, 11, 3))
  fixed = MambaModel(tiny_config(), 3, 2, rngs=nnx.Rngs(0))
  adaptive = MambaModel(_adaptive(), 3, 2, rngs=nnx.Rngs(0))
  fixed_params = nnx.state(fixed, nnx.Param)
  adaptive_params = nnx.state(adaptive, nnx.Param)
  jax.tree.map(
    np.testing.assert_array_equal,
    fixed_params,
    nnx.filter_state(adaptive_params, lambda path, _: path[-1] != "alpha"),
  )
  lengths = jnp.array([11, 6])
  np.testing.assert_array_equal(fixed(x, lengths), adaptive(x, lengths))
  np.testing.assert_array_equal(fixed(x), adaptive(x, sequence_length=1000))


def test_length_adaptive_outputs_change_with_length_once_alpha_is_set():
  x = jax.random.normal(jax.random.key(3), (2, 11, 3))
  steps = dict(dt_min=0.1, dt_max=1.0)  # steps large enough that the state matters at length 11
  model = MambaModel(_adaptive(**steps), 3, 2, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(model(x, sequence_length=8), model(x, sequence_length=64))
  _set_alpha(model, 1.0)
  short, long = model(x, sequence_length=8), model(x, sequence_length=64)
  assert np.abs(np.asarray(short - long)).max() > 1e-3
  np.testing.assert_array_equal(
    model(x, sequence_length=16), MambaModel(tiny_config(**steps), 3, 2, rngs=nnx.Rngs(0))(x)
  )
  # L defaults to the valid length: the same valid prefix under two different lengths differs.
  assert np.abs(np.asarray(model(x, jnp.array([6, 11]))[0, :6] - model(x)[0, :6])).max() > 1e-3
