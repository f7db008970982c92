"""Streaming decode for MambaModel and MambaLM: a constant-size cache, prefill, step, generate.

The cache holds, per layer, the last d_conv conv inputs (batch, d_inner, d_conv) and the SSM state
(batch, d_inner, d_state), plus the L of the length-adaptive step, which decode needs up front
because the step size of every token depends on it. With stacked layers (MambaConfig.scan_layers)
the per-layer caches are one LayerCache with a leading n_layers axis, scanned like the layers.
Everything here is jit-able; `generate` runs the whole token loop as one compiled `lax.scan`.
"""

import functools
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.block import LayerCache
from mamba_jax.discretization import resolve_sequence_length

if TYPE_CHECKING:  # models imports this module
  from mamba_jax.models import MambaLM, MambaModel


class DecodeCache(NamedTuple):
  # A tuple of one block.LayerCache per residual block, or with stacked layers one LayerCache
  # whose arrays have a leading n_layers axis.
  layers: tuple[LayerCache, ...] | LayerCache
  sequence_length: jax.Array | None  # (batch,) float32 L for "length_adaptive", else None


def _sequence_length(model, batch, sequence_length):
  if model.config.discretization != "length_adaptive":
    return None
  if sequence_length is None:
    raise ValueError(
      "length_adaptive decode needs sequence_length: the length L the model is "
      "asked to process (prompt plus generated tokens), given up front"
    )
  return resolve_sequence_length(sequence_length, None, batch, None)


def init_cache(
  model: "MambaModel | MambaLM", batch: int, sequence_length: jax.Array | float | None = None
) -> DecodeCache:
  """An empty cache (zero states) for `batch` sequences of a MambaModel or MambaLM.

  sequence_length: scalar or (batch,) L of the length-adaptive step (required for it).
  """
  return DecodeCache(
    model.backbone.init_cache(batch), _sequence_length(model, batch, sequence_length)
  )


def prefill(
  model: "MambaModel | MambaLM",
  inputs: jax.Array,
  lengths: jax.Array | None = None,
  sequence_length: jax.Array | float | None = None,
) -> tuple[jax.Array, DecodeCache]:
  """Runs the parallel forward over a prompt and returns (outputs, cache after each prompt).

  inputs: (batch, length, in_features) or (batch, length) int tokens; outputs: (batch, length,
  out_features) or logits (batch, length, vocab). lengths: optional (batch,) prompt lengths of
  padded prompts (the cache then holds each example's state after its own last token).
  sequence_length: scalar or (batch,) L of the length-adaptive step (required for it).
  """
  batch = inputs.shape[0]
  L = _sequence_length(model, batch, sequence_length)
  stack = model.backbone

  def forward(layer, residual, _):
    return layer.forward(residual, lengths, L, return_cache=True)

  residual, caches = stack.run_layers(forward, stack.to_residual(model.embed(inputs)))
  outputs = model.read_out(stack.norm_f(residual))
  return outputs, DecodeCache(caches, L)


def step(
  model: "MambaModel | MambaLM", inputs: jax.Array, cache: DecodeCache
) -> tuple[jax.Array, DecodeCache]:
  """One token per sequence: inputs (batch, in_features) or (batch,) int tokens ->
  (outputs (batch, out_features) or logits (batch, vocab), the cache after it)."""
  stack = model.backbone

  def one_step(layer, residual, layer_cache):
    return layer.step(residual, layer_cache, cache.sequence_length)

  residual, caches = stack.run_layers(
    one_step, stack.to_residual(model.embed(inputs)), cache.layers
  )
  outputs = model.read_out(stack.norm_f(residual))
  return outputs, DecodeCache(caches, cache.sequence_length)


def sample(
  logits: jax.Array,
  rng: jax.Array,
  temperature: jax.Array | float,
  top_k: int | None = None,
  vocab_size: int | None = None,
) -> jax.Array:
  """Samples token ids (batch,) from logits (batch, vocab); temperature 0 is greedy.

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


def generate(
  model: "MambaModel | MambaLM",
  prompt: jax.Array,
  max_new_tokens: int,
  temperature: float = 1.0,
  top_k: int | None = None,
  rng: jax.Array | None = None,
  sequence_length: jax.Array | float | None = None,
  eos_token_id: int | None = None,
) -> jax.Array:
  """Samples max_new_tokens tokens after `prompt` (batch, length) int from a MambaLM.

  Returns the new tokens (batch, max_new_tokens) int32. Compiled once per (model structure, prompt
  shape, max_new_tokens, top_k, greedy or not); the token loop is a `lax.scan`. For a
  length-adaptive model L defaults to prompt length + max_new_tokens. eos_token_id: a sequence
  stops at its first such token, and every later position holds eos_token_id as padding (the
  loop still runs max_new_tokens steps; `mamba_jax.checkpoints.checkpoint_eos_token_id` reads a
  checkpoint's).
  """
  if max_new_tokens < 1:
    raise ValueError(f"generate: max_new_tokens = {max_new_tokens}; expected at least 1")
  if top_k is not None and not 1 <= top_k <= (model.config.padded_vocab_size or 0):
    raise ValueError(f"generate: top_k = {top_k}; expected None or 1..vocab size")
  if temperature < 0:
    raise ValueError(f"generate: temperature = {temperature}; expected >= 0 (0 is greedy)")
  if eos_token_id is not None and not 0 <= eos_token_id < (model.config.padded_vocab_size or 0):
    raise ValueError(f"generate: eos_token_id = {eos_token_id}; expected None or a token id")
  if model.config.discretization == "length_adaptive" and sequence_length is None:
    sequence_length = prompt.shape[1] + max_new_tokens
  rng = jax.random.key(0) if rng is None else rng
  graphdef, state = nnx.split(model)
  tokens = _generate(
    graphdef,
    state,
    prompt,
    rng,
    jnp.float32(temperature),
    None if sequence_length is None else jnp.asarray(sequence_length, jnp.float32),
    max_new_tokens=max_new_tokens,
    top_k=top_k,
    greedy=temperature == 0,
  )
  return tokens if eos_token_id is None else _pad_after_eos(tokens, eos_token_id)


@jax.jit
def _pad_after_eos(tokens, eos_token_id):
  """Every token after a sequence's first eos_token_id replaced by eos_token_id."""
  is_eos = tokens == eos_token_id
  return jnp.where(jnp.cumsum(is_eos, axis=1) - is_eos > 0, eos_token_id, tokens)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "top_k", "greedy"))
def _generate(
  graphdef, state, prompt, rng, temperature, sequence_length, *, max_new_tokens, top_k, greedy
):
  vocab_size = nnx.merge(graphdef, state).config.vocab_size
  draw = lambda logits, key: sample(
    logits, key, 0 if greedy else temperature, top_k, vocab_size
  ).astype(jnp.int32)
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
