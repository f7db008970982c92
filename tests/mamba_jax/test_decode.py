"""Streaming decode: step-by-step and prefill + steps equal the parallel forward; generate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamba_jax import decode
from mamba_jax.models import MambaLM, MambaModel
from tests.mamba_jax.helpers import assert_close, tiny_config

LENGTH = 10


def _model(kind, discretization):
  config = tiny_config(
    discretization=discretization, length_ref=6.0, vocab_size=13, dt_min=0.05, dt_max=0.5
  )
  if kind == "continuous":
    model = MambaModel(config, 3, 2, rngs=nnx.Rngs(0))
    inputs = jax.random.normal(jax.random.key(1), (2, LENGTH, 3))
  else:
    model = MambaLM(config, rngs=nnx.Rngs(0))
    inputs = jax.random.randint(jax.random.key(1), (2, LENGTH), 0, 13)
  if discretization == "length_adaptive":
    for layer in model.backbone.layers:
      alpha = layer.mixer.discretization.alpha
      alpha[...] = jax.random.uniform(jax.random.key(2), alpha.shape, minval=-1.0, maxval=1.0)
  return model, inputs


forward = nnx.jit(lambda model, inputs: model(inputs))
prefill = nnx.jit(lambda model, inputs, L: model.prefill(inputs, sequence_length=L))
step = nnx.jit(lambda model, inputs, cache: model.step(inputs, cache))

CASES = [(kind, d) for kind in ("continuous", "tokens") for d in ("fixed", "length_adaptive")]


@pytest.mark.parametrize("kind,discretization", CASES)
def test_steps_from_empty_cache_equal_parallel_forward(kind, discretization):
  model, inputs = _model(kind, discretization)
  expected = forward(model, inputs)  # length-adaptive: L = padded length = LENGTH
  L = LENGTH if discretization == "length_adaptive" else None
  cache = model.init_cache(2, sequence_length=L)
  shapes = jax.tree.map(lambda a: (a.shape, a.dtype), cache)
  for t in range(LENGTH):
    out, cache = step(model, inputs[:, t], cache)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), cache) == shapes  # constant memory
    assert_close(out, expected[:, t])


@pytest.mark.parametrize("kind,discretization", CASES)
def test_prefill_then_steps_equal_parallel_forward(kind, discretization):
  model, inputs = _model(kind, discretization)
  expected = forward(model, inputs)
  L = LENGTH if discretization == "length_adaptive" else None
  outputs, cache = prefill(model, inputs[:, :6], L)
  assert_close(outputs, expected[:, :6])
  conv, ssm = cache.layers[0]
  assert conv.shape == (2, 16, 3) and ssm.shape == (2, 16, 4) and ssm.dtype == jnp.float32
  for t in range(6, LENGTH):
    out, cache = step(model, inputs[:, t], cache)
    assert_close(out, expected[:, t])


def test_prefill_of_padded_prompts_continues_each_prompt():
  model, inputs = _model("continuous", "fixed")
  lengths = jnp.array([6, 2])
  _, cache = model.prefill(inputs[:, :6], lengths=lengths)
  out, _ = model.step(inputs[:, 7], cache)
  for b in range(2):
    sequence = jnp.concatenate(
      [inputs[b : b + 1, : int(lengths[b])], inputs[b : b + 1, 7:8]], axis=1
    )
    assert_close(out[b], forward(model, sequence)[0, -1])


def test_length_adaptive_decode_needs_the_length_up_front():
  model, inputs = _model("continuous", "length_adaptive")
  with pytest.raises(ValueError, match="sequence_length"):
    model.init_cache(2)
  with pytest.raises(ValueError, match="sequence_length"):
    model.prefill(inputs)


def _greedy_by_forward(model, prompt, n, L):
  tokens = prompt
  for _ in range(n):
    logits = forward_at_length(model, tokens, L)[:, -1, : model.config.vocab_size]
    tokens = jnp.concatenate([tokens, jnp.argmax(logits, -1)[:, None]], axis=1)
  return tokens[:, prompt.shape[1] :]


forward_at_length = nnx.jit(lambda model, inputs, L: model(inputs, sequence_length=L))


@pytest.mark.parametrize("discretization", ["fixed", "length_adaptive"])
def test_greedy_generate_equals_greedy_decoding_by_forward(discretization):
  model, prompt = _model("tokens", discretization)
  # generate's default L for length-adaptive models: prompt + new tokens (ignored when fixed).
  expected = _greedy_by_forward(model, prompt, 5, jnp.float32(LENGTH + 5))
  generated = decode.generate(model, prompt, 5, temperature=0.0)
  assert generated.shape == (2, 5) and generated.dtype == jnp.int32
  np.testing.assert_array_equal(generated, expected)
  np.testing.assert_array_equal(
    decode.generate(model, prompt, 5, temperature=1.0, top_k=1, rng=jax.random.key(3)), expected
  )


def test_generate_compiles_once_and_never_samples_vocab_padding():
  model, prompt = _model("tokens", "fixed")
  model.embedding.embedding[...] = model.embedding.embedding[...].at[13:].set(5.0)  # tempting pad
  decode._generate.clear_cache()
  draws = [
    decode.generate(model, prompt, 40, temperature=t, rng=jax.random.key(i))
    for i, t in enumerate((3.0, 2.0, 1.0))
  ]
  assert decode._generate._cache_size() == 1
  draws = np.stack(draws)
  assert draws.max() < 13 and len(np.unique(draws)) > 5
  top2 = np.asarray(decode.generate(model, prompt, 40, temperature=5.0, top_k=2))
  greedy_first = np.asarray(decode.generate(model, prompt, 1, temperature=0.0))[:, 0]
  assert len(np.unique(top2[:, 0])) <= 2 and top2.max() < 13
  assert greedy_first.shape == (2,)


def test_generate_argument_errors():
  model, prompt = _model("tokens", "fixed")
  for kwargs, field in (
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=3, top_k=0), "top_k"),
    (dict(max_new_tokens=3, temperature=-1.0), "temperature"),
  ):
    with pytest.raises(ValueError, match=field):
      decode.generate(model, prompt, **kwargs)
