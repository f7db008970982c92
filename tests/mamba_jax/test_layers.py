"""RMSNorm and the causal depthwise conv against independent formulations."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mamba_jax.layers import CausalConv1d, RMSNorm, torch_linear
from tests.mamba_jax.helpers import assert_close


def test_rms_norm_matches_formula_and_returns_compute_dtype():
  x = jax.random.normal(jax.random.key(0), (3, 5, 8)) * 3.0
  norm = RMSNorm(8, eps=1e-5)
  norm.weight[...] = jnp.arange(1.0, 9.0)
  expected = x / np.sqrt(np.mean(np.square(x), -1, keepdims=True) + 1e-5) * np.arange(1.0, 9.0)
  assert_close(norm(x), expected, rtol=1e-6, atol=1e-6)
  half = RMSNorm(8, dtype=jnp.bfloat16)
  assert half(x).dtype == jnp.bfloat16 and half.weight[...].dtype == jnp.float32


def test_causal_conv_matches_lax_conv():
  conv = CausalConv1d(6, 4, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 9, 6))
  # Cross-correlation with left padding K-1, depthwise: the PyTorch Conv1d(groups=C) semantics.
  kernel = conv.weight[...].T[:, None, :]  # (K, 1, C) as (W, I, O)
  expected = (
    jax.lax.conv_general_dilated(
      x,
      kernel,
      window_strides=(1,),
      padding=[(3, 0)],
      dimension_numbers=("NWC", "WIO", "NWC"),
      feature_group_count=6,
    )
    + conv.bias[...]
  )
  assert_close(conv(x), expected, rtol=1e-6, atol=1e-6)


def test_causal_conv_is_causal_and_step_matches():
  conv = CausalConv1d(5, 3, rngs=nnx.Rngs(2))
  x = jax.random.normal(jax.random.key(3), (2, 7, 5))
  y = conv(x)
  changed = conv(x.at[:, 4:].set(100.0))
  np.testing.assert_array_equal(y[:, :4], changed[:, :4])
  state = jnp.zeros((2, 5, 3))
  for t in range(7):
    y_t, state = conv.step(x[:, t], state)
    assert_close(y_t, y[:, t], rtol=1e-6, atol=1e-6)


def test_conv_init_is_pytorch_default():
  conv = CausalConv1d(4096, 4, rngs=nnx.Rngs(0))
  weight = np.asarray(conv.weight[...])
  assert np.abs(weight).max() <= 0.5 and np.abs(weight).max() > 0.49  # U(+-1/sqrt(4))


def test_torch_linear_init_bounds_and_zero_bias():
  layer = torch_linear(
    64, 512, use_bias=True, dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(0), scale=0.5
  )
  kernel = np.asarray(layer.kernel[...])
  assert kernel.shape == (64, 512)
  assert 0.99 * 0.5 / 8 < np.abs(kernel).max() <= 0.5 / 8
  np.testing.assert_array_equal(layer.bias[...], 0.0)
