"""Baselines: the Mamba models' interface, causality, padding, and S4D being a convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamba_jax.baselines import CausalTransformer, S4DModel
from tests.mamba_jax.helpers import assert_close


def _baseline(name):
  if name == "transformer":
    return CausalTransformer(3, 2, d_model=16, n_layers=2, n_heads=4, rngs=nnx.Rngs(0))
  if name == "transformer_positions":
    return CausalTransformer(
      3,
      2,
      d_model=16,
      n_layers=2,
      n_heads=4,
      positional_embeddings=True,
      max_length=16,
      rngs=nnx.Rngs(0),
    )
  if name == "s4d_paper":  # Grazzi et al.'s S4: S4D-Lin by FFT, C per channel, post-LayerNorm
    return S4DModel(
      3,
      2,
      d_model=8,
      n_layers=2,
      d_state=4,
      n_groups=None,
      kernel="fft",
      init="lin",
      norm="post_layer",
      dropout=0.1,
      rngs=nnx.Rngs(0),
    )
  return S4DModel(
    3, 2, d_model=8, n_layers=2, d_state=4, n_groups=2, dt_min=0.05, dt_max=0.5, rngs=nnx.Rngs(0)
  )


NAMES = ["transformer", "transformer_positions", "s4d", "s4d_paper"]


@pytest.mark.parametrize("name", NAMES)
def test_causal_and_padding_invariant(name):
  model = _baseline(name)
  forward = nnx.jit(lambda model, x, lengths: model(x, lengths))
  x = jax.random.normal(jax.random.key(0), (3, 12, 3))
  out = forward(model, x, None)
  assert out.shape == (3, 12, 2)
  changed = forward(model, x.at[:, 8:].set(9.0), None)
  # the FFT convolution is causal up to float32 rounding (~1e-7), the others exactly
  np.testing.assert_allclose(out[:, :8], changed[:, :8], rtol=0, atol=1e-5 * (name == "s4d_paper"))
  lengths = jnp.array([12, 5, 1])
  valid = jnp.arange(12)[None, :, None] < lengths[:, None, None]
  padded = forward(model, jnp.where(valid, x, -7.0), lengths)
  for b, length in enumerate([12, 5, 1]):
    assert_close(padded[b, :length], out[b, :length])


def test_positional_embeddings_are_optional():
  x = jax.random.normal(jax.random.key(1), (1, 6, 3))
  plain, positions = _baseline("transformer"), _baseline("transformer_positions")
  assert plain.position_embedding is None
  assert positions.position_embedding.embedding.shape == (16, 16)
  # Without positions an output depends on its own input and the set of earlier inputs only.
  swapped = x.at[:, [0, 1]].set(x[:, [1, 0]])
  assert_close(plain(x)[:, 5], plain(swapped)[:, 5])
  assert np.abs(np.asarray(positions(x)[:, 5] - positions(swapped)[:, 5])).max() > 1e-4
  with pytest.raises(ValueError, match="max_length"):
    CausalTransformer(
      3, 2, d_model=16, n_layers=1, n_heads=4, positional_embeddings=True, rngs=nnx.Rngs(0)
    )


def test_s4d_layer_is_a_time_invariant_convolution():
  """Non-selective: y = K * u + D u with K_k = sum_n C_n exp(k dt A_n) dt B_n per channel."""
  layer = _baseline("s4d").layers[0]
  u = jax.random.normal(jax.random.key(2), (2, 9, 8))
  y = layer.ssm(u)
  dt = np.exp(np.asarray(layer.log_dt[...], np.float64))  # (d,)
  A = -np.exp(np.asarray(layer.A_log[...], np.float64))  # (d, n)
  channel_group = np.arange(8) // 4
  B = np.asarray(layer.ssm_B[...], np.float64)[channel_group]  # (d, n)
  C = np.asarray(layer.ssm_C[...], np.float64)[channel_group]
  k = np.arange(9)[:, None, None]
  kernel = np.sum(C * np.exp(k * dt[:, None] * A) * dt[:, None] * B, axis=-1)  # (9, d)
  u64 = np.asarray(u, np.float64)
  expected = np.stack([sum(kernel[s] * u64[:, t - s] for s in range(t + 1)) for t in range(9)], 1)
  assert_close(y, expected + np.asarray(layer.D[...]) * u64)


@pytest.mark.parametrize("name", ["transformer", "s4d", "s4d_paper"])
def test_gradients_are_finite_and_reach_every_parameter(name):
  model = _baseline(name)
  x = jax.random.normal(jax.random.key(3), (2, 7, 3))
  grads = nnx.jit(nnx.grad(lambda model: jnp.sum(model(x) ** 2)))(model)  # eager: slower
  for path, g in jax.tree_util.tree_leaves_with_path(nnx.as_pure(grads)):
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0, path


@pytest.mark.parametrize("name", ["transformer", "s4d", "s4d_paper"])
def test_residual_streams_decode_to_the_outputs(name):
  """n_layers + 1 streams (the embedding, then after each layer); the last one decodes to the
  model's output, the others to what an earlier exit would predict (for probing)."""
  model = _baseline(name)
  x = jax.random.normal(jax.random.key(1), (2, 7, 3))
  outputs, residuals = model(x, return_residuals=True)
  assert len(residuals) == 3 and all(r.shape == (2, 7, residuals[0].shape[-1]) for r in residuals)
  np.testing.assert_array_equal(outputs, model(x))
  np.testing.assert_array_equal(model.read_out_residual(residuals[-1]), outputs)
  assert not np.allclose(model.read_out_residual(residuals[0]), outputs)
