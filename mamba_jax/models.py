"""Mamba models: the residual stack, a continuous-input model and a language model.

Both models share one interface: `model(inputs, lengths=None, sequence_length=None,
left_pad=None)` where `lengths` (batch,) marks the valid prefix of each right-padded example and
`left_pad` (batch,) the number of leading padding positions of a left-padded one (padding changes
nothing at valid positions either way), and `sequence_length` overrides the L of the length-adaptive step (default: `lengths`,
else the padded length). Streaming decode (`init_cache`, `prefill`, `step`) lives in
`mamba_jax.decode`; the methods here forward to it.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax import decode
from mamba_jax.block import ResidualBlock
from mamba_jax.discretization import resolve_sequence_length
from mamba_jax.layers import RMSNorm, torch_linear


class MambaStack(nnx.Module):
  """n_layers pre-norm residual Mamba blocks and the final RMSNorm (mamba_ssm's MixerModel body)."""

  def __init__(self, config, *, rngs):
    self.config = config
    self.layers = nnx.List([ResidualBlock(config, rngs=rngs) for _ in range(config.n_layers)])
    self.norm_f = RMSNorm(config.d_model, eps=config.rms_norm_eps, dtype=config.dtype,
                          param_dtype=config.param_dtype)

  def __call__(self, hidden, lengths=None, sequence_length=None, return_residuals=False,
               left_pad=None):
    """hidden (batch, length, d_model) -> normalised hidden in the compute dtype.

    With return_residuals also the residual stream entering each layer and after the last one
    (n_layers + 1 arrays), for probing.
    """
    batch, length, _ = hidden.shape
    sequence_length = resolve_sequence_length(sequence_length, lengths, batch, length, left_pad)
    residual, residuals = hidden, []
    apply = _apply_layer
    if self.config.remat:
      apply = nnx.remat(_apply_layer)
    for layer in self.layers:
      residuals.append(residual)
      residual = apply(layer, residual, lengths, sequence_length, left_pad)
    residuals.append(residual)
    out = self.norm_f(residual)
    return (out, residuals) if return_residuals else out


def _apply_layer(layer, residual, lengths, sequence_length, left_pad):
  return layer(residual, lengths, sequence_length, left_pad)


class _Decodable(nnx.Module):
  """Streaming-decode methods shared by the models (see `mamba_jax.decode`)."""

  def init_cache(self, batch, sequence_length=None):
    return decode.init_cache(self, batch, sequence_length)

  def prefill(self, inputs, lengths=None, sequence_length=None):
    return decode.prefill(self, inputs, lengths, sequence_length)

  def step(self, inputs, cache):
    return decode.step(self, inputs, cache)


class MambaModel(_Decodable):
  """Continuous sequences: Linear(in_features -> d_model) -> Mamba stack -> Linear(-> out_features).

  For patch sequences (vision) and in-context function regression. inputs (batch, length,
  in_features) -> outputs (batch, length, out_features) in the compute dtype.
  """

  def __init__(self, config, in_features, out_features, *, rngs):
    self.config = config
    dense = dict(use_bias=True, dtype=config.dtype, param_dtype=config.param_dtype, rngs=rngs)
    self.input_proj = torch_linear(in_features, config.d_model, **dense)
    self.backbone = MambaStack(config, rngs=rngs)
    self.output_proj = torch_linear(config.d_model, out_features, **dense)

  def __call__(self, inputs, lengths=None, sequence_length=None, left_pad=None,
               return_residuals=False):
    """With return_residuals also the residual stream entering each layer and after the last
    one (n_layers + 1 arrays), for probing; `decode` maps one to outputs."""
    hidden = self.backbone(self.embed(inputs), lengths, sequence_length,
                           return_residuals=return_residuals, left_pad=left_pad)
    if return_residuals:
      return self.read_out(hidden[0]), hidden[1]
    return self.read_out(hidden)

  def embed(self, inputs):
    return self.input_proj(inputs.astype(self.config.dtype))

  def decode(self, residual):
    """A residual stream (batch, length, d_model) through the final norm and read-out."""
    return self.read_out(self.backbone.norm_f(residual))

  def read_out(self, hidden):
    return self.output_proj(hidden)


class MambaLM(_Decodable):
  """Token language model (mamba_ssm's MambaLMHeadModel): embedding -> stack -> tied head.

  The vocabulary is padded to a multiple of config.pad_vocab_size_multiple; logits cover the padded
  vocabulary and are returned in float32. tokens (batch, length) int -> (batch, length, vocab).
  """

  def __init__(self, config, *, rngs):
    if config.vocab_size is None:
      raise ValueError("MambaConfig.vocab_size = None; MambaLM needs a vocabulary size")
    self.config = config
    vocab = config.padded_vocab_size
    self.embedding = nnx.Embed(
        vocab, config.d_model, dtype=config.dtype, param_dtype=config.param_dtype,
        embedding_init=nnx.initializers.normal(config.initializer_range), rngs=rngs)
    self.backbone = MambaStack(config, rngs=rngs)
    self.lm_head = None if config.tie_embeddings else torch_linear(
        config.d_model, vocab, use_bias=False, dtype=config.dtype,
        param_dtype=config.param_dtype, rngs=rngs)

  def __call__(self, tokens, lengths=None, sequence_length=None, left_pad=None):
    return self.read_out(self.backbone(self.embed(tokens), lengths, sequence_length,
                                       left_pad=left_pad))

  def embed(self, tokens):
    return self.embedding(tokens)

  def read_out(self, hidden):
    logits = self.embedding.attend(hidden) if self.lm_head is None else self.lm_head(hidden)
    return logits.astype(jnp.float32)


def count_parameters(model):
  """Number of scalars in the model's nnx.Param variables (works on nnx.eval_shape models)."""
  return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
