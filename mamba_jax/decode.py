"""Streaming decode for MambaModel and MambaLM: a constant-size cache, prefill, step, generate.

The cache holds, per layer, the last d_conv conv inputs (batch, d_inner, d_conv) and the SSM state
(batch, d_inner, d_state), plus the L of the length-adaptive step, which decode needs up front
because the step size of every token depends on it. Everything here is jit-able; `generate` runs
the whole token loop as one compiled `lax.scan`.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.block import LayerCache
from mamba_jax.discretization import resolve_sequence_length


class DecodeCache(NamedTuple):
  layers: tuple  # one block.LayerCache per residual block
  sequence_length: jax.Array | None  # (batch,) float32 L for "length_adaptive", else None


def _sequence_length(model, batch, sequence_length):
  if model.config.discretization != "length_adaptive":
    return None
  if sequence_length is None:
    raise ValueError("length_adaptive decode needs sequence_length: the length L the model is "
                     "asked to process (prompt plus generated tokens), given up front")
  return resolve_sequence_length(sequence_length, None, batch, None)


def init_cache(model, batch, sequence_length=None):
  """An empty cache (zero states) for `batch` sequences."""
  layers = tuple(layer.mixer.init_cache(batch) for layer in model.backbone.layers)
  return DecodeCache(layers, _sequence_length(model, batch, sequence_length))


def prefill(model, inputs, lengths=None, sequence_length=None):
  """Runs the parallel forward over a prompt and returns (outputs, cache after each prompt).

  inputs: (batch, length, in_features) or (batch, length) tokens; lengths: optional (batch,)
  prompt lengths of padded prompts (the cache then holds each example's state after its own last
  token). sequence_length: L of the length-adaptive step (required for it).
  """
  batch, length = inputs.shape[:2]
  L = _sequence_length(model, batch, sequence_length)
  stack = model.backbone
  residual, caches = model.embed(inputs), []
  for layer in stack.layers:
    residual, layer_cache = layer.forward(residual, lengths, L, return_cache=True)
    caches.append(layer_cache)
  outputs = model.read_out(stack.norm_f(residual))
  return outputs, DecodeCache(tuple(caches), L)


def step(model, inputs, cache):
  """One step: inputs (batch, in_features) or (batch,) tokens -> (outputs (batch, out), cache)."""
  residual, caches = model.embed(inputs), []
  for layer, layer_cache in zip(model.backbone.layers, cache.layers):
    residual, layer_cache = layer.step(residual, layer_cache, cache.sequence_length)
    caches.append(layer_cache)
  outputs = model.read_out(model.backbone.norm_f(residual))
  return outputs, DecodeCache(tuple(caches), cache.sequence_length)


def sample(logits, rng, temperature, top_k=None, vocab_size=None):
  """Samples token ids from logits (batch, vocab); temperature 0 is greedy.

  Entries at and past vocab_size (the padding of the vocabulary) are never drawn.
  """
  logits = logits.astype(jnp.float32)
  if vocab_size is not None and vocab_size < logits.shape[-1]:
    logits = jnp.where(jnp.arange(logits.shape[-1]) < vocab_size, logits, -jnp.inf)
  if isinstance(temperature, (int, float)) and temperature == 0:
    return jnp.argmax(logits, axis=-1)
  if top_k is not None:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits >= kth, logits, -jnp.inf)
  return jax.random.categorical(rng, logits / temperature, axis=-1)


def generate(model, prompt, max_new_tokens, temperature=1.0, top_k=None, rng=None,
             sequence_length=None):
  """Samples max_new_tokens tokens after `prompt` (batch, length) from a MambaLM.

  Returns the new tokens (batch, max_new_tokens) int32. Compiled once per (model structure, prompt
  shape, max_new_tokens, top_k, greedy or not); the token loop is a `lax.scan`. For a
  length-adaptive model L defaults to prompt length + max_new_tokens.
  """
  if max_new_tokens < 1:
    raise ValueError(f"generate: max_new_tokens = {max_new_tokens}; expected at least 1")
  if top_k is not None and not 1 <= top_k <= model.config.padded_vocab_size:
    raise ValueError(f"generate: top_k = {top_k}; expected None or 1..vocab size")
  if temperature < 0:
    raise ValueError(f"generate: temperature = {temperature}; expected >= 0 (0 is greedy)")
  if model.config.discretization == "length_adaptive" and sequence_length is None:
    sequence_length = prompt.shape[1] + max_new_tokens
  rng = jax.random.key(0) if rng is None else rng
  graphdef, state = nnx.split(model)
  return _generate(graphdef, state, prompt, rng, jnp.float32(temperature),
                   None if sequence_length is None else jnp.asarray(sequence_length, jnp.float32),
                   max_new_tokens=max_new_tokens, top_k=top_k, greedy=temperature == 0)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "top_k", "greedy"))
def _generate(graphdef, state, prompt, rng, temperature, sequence_length, *, max_new_tokens,
              top_k, greedy):
  vocab_size = nnx.merge(graphdef, state).config.vocab_size
  draw = lambda logits, key: sample(logits, key, 0 if greedy else temperature, top_k,
                                    vocab_size).astype(jnp.int32)
  logits, cache = prefill(nnx.merge(graphdef, state), prompt, sequence_length=sequence_length)
  keys = jax.random.split(rng, max_new_tokens)
  first = draw(logits[:, -1], keys[0])

  def body(carry, key):
    token, cache = carry
    logits, cache = step(nnx.merge(graphdef, state), token, cache)
    token = draw(logits, key)
    return (token, cache), token

  _, rest = jax.lax.scan(body, (first, cache), keys[1:])
  return jnp.concatenate([first[:, None], rest.T], axis=1)
