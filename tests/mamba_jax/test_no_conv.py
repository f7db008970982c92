"""d_conv = 0 (the image-reconstruction paper's Mamba has no conv) and MambaModel without its
input Linear: the forward against the float64 reference with the conv removed, decode
(step, prefill, padded prompts, generate), left padding and the config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mamba_jax
from mamba_jax import decode
from mamba_jax.block import MambaBlock
from mamba_jax.checkpoints import config_to_dict
from tests.mamba_jax.helpers import assert_close, tiny_config
from tests.mamba_jax.test_block import mamba_forward_float64
from tests.mamba_jax.test_left_padding import LENGTH as PAD_LENGTH
from tests.mamba_jax.test_left_padding import PADS
from tests.mamba_jax.test_left_padding import _check as check_left_padding

LENGTH = 10
forward = nnx.jit(lambda model, inputs: model(inputs))
step = nnx.jit(lambda model, inputs, cache: model.step(inputs, cache))


def test_config_accepts_zero_and_refuses_negative_conv_width():
  assert tiny_config(d_conv=0).d_conv == 0
  with pytest.raises(ValueError, match="MambaConfig.d_conv = -1"):
    tiny_config(d_conv=-1)


def test_block_without_conv_matches_the_reference_with_the_conv_removed():
  config = tiny_config(d_conv=0, dt_min=0.05, dt_max=0.5)
  block = MambaBlock(config, rngs=nnx.Rngs(1))
  assert block.conv1d is None
  names = {str(path) for path, _ in nnx.to_flat_state(nnx.state(block, nnx.Param))}
  assert not any("conv1d" in name for name in names)
  hidden = jax.random.normal(jax.random.key(2), (2, 13, 8))
  out = block(hidden)
  for b in range(2):
    assert_close(out[b], mamba_forward_float64(block, np.asarray(hidden[b], np.float64)))
  with_conv = MambaBlock(tiny_config(dt_min=0.05, dt_max=0.5), rngs=nnx.Rngs(1))
  assert not np.allclose(with_conv(hidden), out, atol=1e-3)  # the conv really is gone


def _model(discretization, scan_layers):
  config = tiny_config(
    d_conv=0,
    discretization=discretization,
    length_ref=6.0,
    dt_min=0.05,
    dt_max=0.5,
    scan_layers=scan_layers,
  )
  model = mamba_jax.MambaModel(config, 3, 2, rngs=nnx.Rngs(0))
  if discretization == "length_adaptive":
    alphas = (
      [layer.mixer.discretization.alpha for layer in model.backbone.layers]
      if (not scan_layers)
      else [model.backbone.stacked_layers.mixer.discretization.alpha]
    )
    for alpha in alphas:
      alpha[...] = jax.random.uniform(jax.random.key(2), alpha.shape, minval=-1.0, maxval=1.0)
  inputs = jax.random.normal(jax.random.key(1), (2, LENGTH, 3))
  return model, inputs


@pytest.mark.parametrize("discretization", ["fixed", "length_adaptive"])
@pytest.mark.parametrize("scan_layers", [False, True])
def test_decode_without_conv_equals_the_parallel_forward(discretization, scan_layers):
  model, inputs = _model(discretization, scan_layers)
  expected = forward(model, inputs)
  L = LENGTH if discretization == "length_adaptive" else None
  cache = model.init_cache(2, sequence_length=L)
  for t in range(LENGTH):
    out, cache = step(model, inputs[:, t], cache)
    assert_close(out, expected[:, t])
  outputs, cache = model.prefill(inputs[:, :6], sequence_length=L)
  assert_close(outputs, expected[:, :6])
  conv, ssm = cache.layers if scan_layers else cache.layers[0]
  assert conv.shape[-1] == 0 and ssm.shape[-2:] == (16, 4)
  for t in range(6, LENGTH):
    out, cache = step(model, inputs[:, t], cache)
    assert_close(out, expected[:, t])


def test_prefill_of_padded_prompts_without_conv_continues_each_prompt():
  model, inputs = _model("fixed", False)
  expected = forward(model, inputs)
  lengths = jnp.array([4, 7])
  _, cache = model.prefill(inputs, lengths=lengths)
  for b, start in enumerate((4, 7)):
    one = jax.tree.map(lambda a, b=b: a[b : b + 1], cache)
    for t in range(start, LENGTH):
      out, one = step(model, inputs[b : b + 1, t], one)
      assert_close(out[0], expected[b, t])


@pytest.mark.parametrize("discretization", ["fixed", "length_adaptive"])
def test_left_padding_without_conv(discretization):
  config = tiny_config(d_conv=0, discretization=discretization, length_ref=4.0)
  model = mamba_jax.MambaModel(config, 3, 2, rngs=nnx.Rngs(0))
  if discretization == "length_adaptive":
    model.backbone.layers[0].mixer.discretization.alpha[...] = jnp.full((config.d_inner,), 0.7)
  x = jax.random.normal(jax.random.PRNGKey(1), (len(PADS), PAD_LENGTH, 3))
  check_left_padding(model, x, sequence_length=PAD_LENGTH)


def test_greedy_generate_without_conv_equals_forward_decoding():
  config = tiny_config(d_conv=0, vocab_size=13, dt_min=0.05, dt_max=0.5)
  model = mamba_jax.MambaLM(config, rngs=nnx.Rngs(0))
  prompt = jax.random.randint(jax.random.key(1), (2, 5), 0, 13)
  generated = decode.generate(model, prompt, 4, temperature=0.0)
  tokens = prompt
  for _ in range(4):
    tokens = jnp.concatenate([tokens, jnp.argmax(model(tokens)[:, -1, :13], -1)[:, None]], 1)
  np.testing.assert_array_equal(generated, tokens[:, 5:])
  with pytest.raises(ValueError, match="d_conv = 0"):
    config_to_dict(config, "hf")


def test_model_without_input_projection_feeds_the_inputs_to_the_stack():
  config = tiny_config(d_conv=0)
  model = mamba_jax.MambaModel(config, 8, 2, rngs=nnx.Rngs(0), input_proj=False)
  assert model.input_proj is None
  inputs = jax.random.normal(jax.random.key(1), (2, 6, 8))
  np.testing.assert_array_equal(
    model(inputs), model.output_proj(model.backbone(inputs.astype(jnp.float32)))
  )
  cache = model.init_cache(2)
  for t in range(6):
    out, cache = step(model, inputs[:, t], cache)
    assert_close(out, model(inputs)[:, t])
  with pytest.raises(ValueError, match="in_features = 3 must equal d_model = 8"):
    mamba_jax.MambaModel(config, 3, 2, rngs=nnx.Rngs(0), input_proj=False)
