"""Left-padded batches (padding before each example): valid positions are exactly unpadded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mamba_jax
from mamba_jax.baselines.transformer import CausalTransformer
from tests.mamba_jax.helpers import assert_close, tiny_config

PADS = (0, 3, 6)
LENGTH = 9


def _check(model, x, **call):
  """Example b gets max(PADS) - PADS[b] garbage steps before it and PADS[b] after it (cut off
  by lengths); its outputs must equal the unpadded run."""
  padded = np.array(
    jax.random.normal(jax.random.PRNGKey(7), (len(PADS), LENGTH + max(PADS), x.shape[-1]))
  )
  for b, pad in enumerate(PADS):
    padded[b, max(PADS) - pad : max(PADS) - pad + LENGTH] = x[b]
    padded[b, max(PADS) + LENGTH - pad :] = 0  # right padding, cut off by lengths
  left = jnp.asarray([max(PADS) - pad for pad in PADS])
  lengths = left + LENGTH
  out = model(jnp.asarray(padded), lengths=lengths, left_pad=left, **call)
  for b in range(len(PADS)):
    alone = model(x[b : b + 1], **call)
    assert_close(out[b, int(left[b]) : int(lengths[b])], alone[0])


@pytest.mark.parametrize("discretization", ["fixed", "length_adaptive"])
def test_mamba_model_left_padding(discretization):
  config = tiny_config(discretization=discretization, length_ref=4.0)
  model = mamba_jax.MambaModel(config, 3, 2, rngs=nnx.Rngs(0))
  if discretization == "length_adaptive":
    model.backbone.layers[0].mixer.discretization.alpha[...] = jnp.full((config.d_inner,), 0.7)
  x = jax.random.normal(jax.random.PRNGKey(1), (len(PADS), LENGTH, 3))
  _check(model, x, sequence_length=LENGTH)


def test_mamba_left_padding_default_length_is_the_valid_count():
  config = tiny_config(discretization="length_adaptive", length_ref=4.0)
  model = mamba_jax.MambaModel(config, 3, 2, rngs=nnx.Rngs(0))
  for layer in model.backbone.layers:
    layer.mixer.discretization.alpha[...] = jnp.full((config.d_inner,), 0.5)
  x = jax.random.normal(jax.random.PRNGKey(1), (len(PADS), LENGTH, 3))
  _check(model, x)  # L = lengths - left_pad = LENGTH without saying so


@pytest.mark.parametrize("positional", [False, True])
def test_transformer_left_padding(positional):
  model = CausalTransformer(
    3,
    2,
    d_model=8,
    n_layers=2,
    n_heads=2,
    positional_embeddings=positional,
    max_length=32,
    rngs=nnx.Rngs(0),
  )
  x = jax.random.normal(jax.random.PRNGKey(1), (len(PADS), LENGTH, 3))
  _check(model, x)


def test_left_padding_content_is_ignored():
  model = mamba_jax.MambaModel(tiny_config(), 3, 2, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 12, 3))
  other = x.at[:, :4].set(100.0)
  left = jnp.asarray([4])
  np.testing.assert_array_equal(model(x, left_pad=left)[:, 4:], model(other, left_pad=left)[:, 4:])
