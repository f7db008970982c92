"""Study A's model: the paper's Mamba (no conv, no out_proj rescale, tokens straight into the
backbone) is the default, and the project's earlier variant is one config away."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.studies.length_generalisation.configs import digits, digits_project_model, omniglot
from experiments.studies.length_generalisation.model import PatchReconstructor

MAMBAS = ("mamba", "mamba_length_adaptive", "mamba_length_token")


def _build(config, variant):
  return PatchReconstructor(variant, config.model, patch_pixels=16, rngs=nnx.Rngs(0))


def _param_names(model):
  return {"/".join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.mark.parametrize("variant", MAMBAS)
@pytest.mark.parametrize("config_module", [digits, omniglot])
def test_paper_model_has_no_conv_no_rescale_and_no_input_linear(variant, config_module):
  study_config = config_module.get_config()
  study_config.model.mamba.n_layers = 8  # stacked, as the paper's 8 layers would be
  model = _build(study_config, variant)
  config = model.backbone.config
  assert (config.d_conv, config.rescale_prenorm_residual) == (0, False)
  names = _param_names(model)
  assert not any("conv1d" in n or "input_proj" in n for n in names)
  assert {"patch_conv/kernel", "patch_proj/kernel"} <= names
  d_token = study_config.model.d_token
  assert d_token == config.d_model
  assert model.patch_conv.out_features == 16 and model.patch_proj.out_features == d_token - 2
  # out_proj keeps PyTorch's default U(+-1/sqrt(d_inner)): its spread is not cut by sqrt(8).
  kernel = np.asarray(model.backbone.backbone.stacked_layers.mixer.out_proj.kernel[...])
  assert np.abs(kernel).max() > 0.8 / np.sqrt(config.d_inner)
  batch, bucket, queries = 2, 5, 3
  keys = jax.random.split(jax.random.key(1), 3)
  out = model(
    jax.random.normal(keys[0], (batch, bucket, 16)),  # 4 x 4 patches
    jax.random.uniform(keys[1], (batch, bucket, 2)),
    jax.random.uniform(keys[2], (batch, queries, 2)),
    n_context=3,
  )
  assert out.shape == (batch, queries, 16) and bool(jnp.all(jnp.isfinite(out)))


def test_project_model_keeps_conv_rescale_and_input_linear():
  model = _build(digits_project_model.get_config(), "mamba")
  config = model.backbone.config
  assert (config.d_conv, config.rescale_prenorm_residual) == (4, True)
  names = _param_names(model)
  assert any("input_proj" in n for n in names) and any("conv1d" in n for n in names)


def test_tokens_straight_into_the_backbone_need_d_token_equal_d_model():
  config = digits.get_config()
  config.model.d_token = 12
  d_model = config.model.mamba.d_model
  with pytest.raises(
    ValueError, match=f"d_token = 12 must equal config.model.mamba.d_model = {d_model}"
  ):
    _build(config, "mamba")
  config.model.mamba_input_proj = True  # the Linear maps 12 -> d_model
  assert _build(config, "mamba").backbone.input_proj is not None


def test_length_token_starts_as_pytorchs_linear():
  """The paper's nn.Linear(1, hidden): kernel and bias U(-1, 1), so L reaches the SSM through the
  first RMSNorm from step 0 (a zero bias would let the norm scale it out)."""
  model = _build(digits.get_config(), "mamba_length_token")
  kernel = np.asarray(model.length_embed.kernel[...])
  bias = np.asarray(model.length_embed.bias[...])
  for values in (kernel, bias):
    assert np.all(np.abs(values) <= 1.0) and np.abs(values).max() > 0.5
  assert np.std(bias) > 0.3  # U(-1, 1) has std 0.58


def test_length_token_reads_l_over_its_scale():
  """The token's input is L / config.model.length_token_scale: doubling both leaves the output
  unchanged, and the scale does change what the model is told."""
  config = digits.get_config()
  config.model.mamba.n_layers = 1
  assert config.model.length_token_scale == 3.2  # the paper's 100 / 1024, at L up to 32
  assert omniglot.get_config().model.length_token_scale == 100
  keys = jax.random.split(jax.random.key(1), 3)
  inputs = (
    jax.random.normal(keys[0], (2, 6, 16)),
    jax.random.uniform(keys[1], (2, 6, 2)),
    jax.random.uniform(keys[2], (2, 3, 2)),
  )
  model = _build(config, "mamba_length_token")
  told_8 = model(*inputs, n_context=6, total_length=8)
  config.model.length_token_scale = 6.4
  rescaled = _build(config, "mamba_length_token")
  np.testing.assert_array_equal(rescaled(*inputs, n_context=6, total_length=16), told_8)
  # about 1e-4 at the start, one layer deep; float32 rounding of the output is about 1e-7
  assert np.abs(np.asarray(rescaled(*inputs, n_context=6, total_length=8) - told_8)).max() > 2e-5
  config.model.length_token_scale = 0.0
  with pytest.raises(ValueError, match="length_token_scale = 0.0"):
    _build(config, "mamba_length_token")
