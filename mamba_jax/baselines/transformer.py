"""A GPT-2-style causal transformer over continuous inputs, the attention baseline of the studies.

Pre-LayerNorm blocks (causal multi-head self-attention, GELU MLP of width 4 * d_model), final
LayerNorm, GPT-2 init (N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layers)).
Learned positional embeddings are optional and off by default: the in-context-learning study
(Grazzi et al. 2024, after Garg et al. 2022) compares against a transformer without them.
"""

import math
from typing import cast

import jax
import jax.numpy as jnp
from flax import nnx

INIT_STD = 0.02


def _dense(in_features, out_features, *, std, dtype, param_dtype, rngs):
  return nnx.Linear(
    in_features,
    out_features,
    dtype=dtype,
    param_dtype=param_dtype,
    kernel_init=nnx.initializers.normal(std),
    rngs=rngs,
  )


class CausalSelfAttention(nnx.Module):
  def __init__(self, d_model, n_heads, *, residual_std, dtype, param_dtype, rngs):
    if d_model % n_heads:
      raise ValueError(
        f"CausalTransformer: d_model = {d_model} is not divisible by n_heads = {n_heads}"
      )
    self.n_heads = n_heads
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.qkv = _dense(d_model, 3 * d_model, std=INIT_STD, **kw)
    self.out = _dense(d_model, d_model, std=residual_std, **kw)

  def __call__(self, x, lengths=None, key_mask=None):
    """key_mask: optional (batch, 1, length, length) bool of keys each query may see."""
    batch, length, d_model = x.shape
    q, k, v = jnp.split(self.qkv(x).reshape(batch, length, 3 * self.n_heads, -1), 3, axis=2)
    y = jax.nn.dot_product_attention(
      q, k, v, mask=key_mask, is_causal=True, key_value_seq_lengths=lengths
    )
    return self.out(y.reshape(batch, length, d_model))


class CausalTransformerBlock(nnx.Module):
  """Pre-LayerNorm GPT-2 block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

  def __init__(self, d_model, n_heads, *, residual_std, dtype, param_dtype, rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.ln_1 = nnx.LayerNorm(d_model, epsilon=1e-5, **kw)
    self.attn = CausalSelfAttention(d_model, n_heads, residual_std=residual_std, **kw)
    self.ln_2 = nnx.LayerNorm(d_model, epsilon=1e-5, **kw)
    self.mlp_in = _dense(d_model, 4 * d_model, std=INIT_STD, **kw)
    self.mlp_out = _dense(4 * d_model, d_model, std=residual_std, **kw)

  def __call__(self, x, lengths=None, key_mask=None):
    x = x + self.attn(self.ln_1(x), lengths, key_mask)
    return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.ln_2(x))))


class CausalTransformer(nnx.Module):
  """inputs (batch, length, in_features) -> outputs (batch, length, out_features).

  lengths: optional (batch,) valid lengths; attention is causal, so padding after an example's
  length cannot reach its valid positions (padded keys are masked as well). With
  positional_embeddings, max_length bounds the sequence length.
  """

  def __init__(
    self,
    in_features,
    out_features,
    *,
    d_model,
    n_layers,
    n_heads,
    positional_embeddings=False,
    max_length=None,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs,
  ):
    if positional_embeddings and not max_length:
      raise ValueError("CausalTransformer: positional_embeddings=True needs max_length")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    residual_std = INIT_STD / math.sqrt(2 * n_layers)
    self.dtype = dtype
    self.input_proj = _dense(in_features, d_model, std=INIT_STD, **kw)
    self.position_embedding = (
      nnx.Embed(
        cast(int, max_length), d_model, embedding_init=nnx.initializers.normal(INIT_STD), **kw
      )
      if positional_embeddings
      else None
    )
    self.blocks = nnx.List(
      [
        CausalTransformerBlock(d_model, n_heads, residual_std=residual_std, **kw)
        for _ in range(n_layers)
      ]
    )
    self.ln_f = nnx.LayerNorm(d_model, epsilon=1e-5, **kw)
    self.output_proj = _dense(d_model, out_features, std=INIT_STD, **kw)

  def __call__(
    self,
    inputs: jax.Array,
    lengths: jax.Array | None = None,
    left_pad: jax.Array | None = None,
    return_residuals: bool = False,
  ) -> jax.Array | tuple[jax.Array, list[jax.Array]]:
    """inputs (batch, length, in_features) -> outputs (batch, length, out_features).

    left_pad: optional (batch,) leading padding positions, masked as keys (a padding query
    sees only itself); positional embeddings, if any, count from the first valid position.

    With return_residuals also the residual stream entering each block and after the last one
    (n_layers + 1 arrays), for probing; `read_out_residual` maps one to outputs.
    """
    x = self.input_proj(inputs.astype(self.dtype))
    key_mask = None
    if left_pad is not None:
      positions = jnp.arange(inputs.shape[1])
      left_pad = jnp.broadcast_to(jnp.asarray(left_pad, jnp.int32), (inputs.shape[0],))
      key_mask = (
        (positions[None, None, :] >= left_pad[:, None, None])
        | (positions[:, None] == positions[None, :])[None]
      )[:, None]
    if self.position_embedding is not None:
      index = jnp.arange(inputs.shape[1])[None]
      if left_pad is not None:
        index = jnp.maximum(index - left_pad[:, None], 0)
      x = x + self.position_embedding(index)
    if lengths is not None:
      # an empty example must not attend to nothing
      lengths = jnp.maximum(lengths.astype(jnp.int32), 1)
    residuals = []
    for block in self.blocks:
      residuals.append(x)
      x = block(x, lengths, key_mask)
    residuals.append(x)
    out = self.read_out_residual(x)
    return (out, residuals) if return_residuals else out

  def read_out_residual(self, residual: jax.Array) -> jax.Array:
    """A residual stream (batch, length, d_model) through the final norm and read-out:
    (batch, length, out_features)."""
    return self.output_proj(self.ln_f(residual))
