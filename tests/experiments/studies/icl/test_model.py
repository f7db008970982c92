"""The in-context regressors: every variant from config, causal, probing streams that decode."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from experiments.studies.icl.model import VARIANTS, ICLRegressor, family


def tiny_model_config():
  return ml_collections.ConfigDict(
    {
      "mamba": dict(
        d_model=8,
        n_layers=2,
        d_state=4,
        d_conv=4,
        expand=2,
        dt_rank="auto",
        length_ref=12.0,
        scan_implementation="auto",
        remat=False,
        learning_rate=0.0,
      ),
      "transformer": dict(d_model=8, n_layers=2, n_heads=2, learning_rate=0.0),
      "s4d": dict(d_model=8, n_layers=2, d_state=4, scan_implementation="auto", learning_rate=0.0),
    }
  )


def test_family_of_each_variant():
  assert [family(v) for v in VARIANTS] == ["mamba", "mamba", "transformer", "s4d"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_are_causal_and_streams_decode_to_them(variant):
  model = ICLRegressor(variant, tiny_model_config(), 3, rngs=nnx.Rngs(0))
  prompt = jax.random.normal(jax.random.key(0), (2, 10, 3))
  outputs = model(prompt)
  assert outputs.shape == (2, 10) and outputs.dtype == np.float32
  changed = model(prompt.at[:, 6:].set(5.0))
  np.testing.assert_allclose(changed[:, :6], outputs[:, :6], rtol=1e-5, atol=1e-6)
  final, residuals = model(prompt, return_residuals=True)
  assert len(residuals) == 3
  np.testing.assert_allclose(final, outputs, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(model.read_out_residual(residuals[-1]), outputs, rtol=1e-6, atol=1e-6)


def test_length_adaptive_step_sees_the_prompt_length():
  """Fixed and length-adaptive Mamba start equal (alpha = 0). With alpha = 1 they still agree on
  prompts of L_ref tokens and differ on longer ones: L is the prompt's token count."""
  config = tiny_model_config()
  fixed = ICLRegressor("mamba", config, 3, rngs=nnx.Rngs(0))
  adaptive = ICLRegressor("mamba_length_adaptive", config, 3, rngs=nnx.Rngs(0))
  at_ref = jax.random.normal(jax.random.key(0), (2, 12, 3))
  longer = jax.random.normal(jax.random.key(1), (2, 30, 3))
  np.testing.assert_allclose(adaptive(longer), fixed(longer), rtol=1e-5, atol=1e-6)
  for layer in adaptive.backbone.backbone.layers:
    layer.mixer.discretization.alpha[...] = jnp.ones_like(layer.mixer.discretization.alpha[...])
  np.testing.assert_allclose(adaptive(at_ref), fixed(at_ref), rtol=1e-5, atol=1e-6)
  assert not np.allclose(adaptive(longer), fixed(longer), rtol=1e-4, atol=1e-5)


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match="Unknown in-context model 'lstm'"):
    ICLRegressor("lstm", tiny_model_config(), 3, rngs=nnx.Rngs(0))


def test_positional_embeddings_let_attention_pair_each_y_with_its_x():
  """Why the CPU transformer has positional embeddings: without them one causal attention layer
  sees its earlier tokens as a set, so x1, y1, x2, y2, xq and x1, y2, x2, y1, xq (the y values
  swapped between the pairs) give the query the same output; it cannot tell which y belongs to
  which x, which a shallow transformer needs to regress in context."""
  config = tiny_model_config()
  config.transformer.n_layers = 1
  x = jax.random.normal(jax.random.key(0), (3, 3))
  y1, y2 = jnp.array([1.5, 0, 0]), jnp.array([-0.7, 0, 0])
  prompt = jnp.stack([x[0], y1, x[1], y2, x[2]])[None]
  swapped = jnp.stack([x[0], y2, x[1], y1, x[2]])[None]
  plain = ICLRegressor("transformer", config, 3, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(plain(prompt)[:, -1], plain(swapped)[:, -1], rtol=1e-5, atol=1e-6)
  config.transformer.positional_embeddings = True
  config.transformer.max_length = 8
  positional = ICLRegressor("transformer", config, 3, rngs=nnx.Rngs(0))
  assert not np.allclose(positional(prompt)[:, -1], positional(swapped)[:, -1], atol=1e-4)
