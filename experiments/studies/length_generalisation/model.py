"""The image-reconstruction model of Rathjens et al. 2026 (docs/design.md section 6A).

Sequence: [length token] + L context patch tokens + a learned delimiter + Q query tokens; the
backbone's outputs at the queries are the predicted patches. A patch token is the P x P pixels
through a P x P convolution to 16 channels (on one patch: a linear map), a linear map to
d_token - 2, and the patch centre appended. A query token is a learned (d_token - 2)-vector with
the query centre appended. The output is linear + sigmoid, rescaled from [0, 1] to the images'
[-1, 1] range.

Variants: "mamba" (fixed step), "mamba_length_adaptive" (docs/design.md section 4:
the step scales with the number of context patches L), "mamba_length_token" (the paper's own
variant: a linear embedding of L / config.model.length_token_scale prepended; the paper's scale
is 100 at L up to 1024), "transformer" (causal; no sequence-index
positions: every token carries its 2-d centre, so nothing in it is tied to a maximum length).
Each reads its backbone's sizes from its config section (config.model.mamba or .transformer).
config.model.mamba_input_proj = False (the configs' default) feeds the tokens to the Mamba
backbone directly, as the paper does (d_token must equal d_model); True puts a
Linear(d_token -> d_model) before it (configs/digits_project_model.py).
"""

import jax
import jax.numpy as jnp
from flax import nnx

import mamba_jax
from experiments import model_builders
from mamba_jax.layers import uniform_init

VARIANTS = ("mamba", "mamba_length_adaptive", "mamba_length_token", "transformer")
_POSITION_FEATURES = 2


class PatchReconstructor(nnx.Module):
  def __init__(self, variant, config, *, patch_pixels, rngs):
    """variant: one of VARIANTS; config: the config.model ConfigDict (d_token, patch_channels,
    and a section per backbone family)."""
    if variant not in VARIANTS:
      raise ValueError(f"Unknown reconstruction model {variant!r}; expected one of {VARIANTS}")
    self.variant = variant
    d_token = config.d_token
    content = d_token - _POSITION_FEATURES
    self.patch_conv = nnx.Linear(patch_pixels, config.patch_channels, rngs=rngs)
    self.patch_proj = nnx.Linear(config.patch_channels, content, rngs=rngs)
    self.query = nnx.Param(0.02 * jax.random.normal(rngs.params(), (content,)))
    self.delimiter = nnx.Param(0.02 * jax.random.normal(rngs.params(), (d_token,)))
    if variant == "transformer":
      self.backbone = model_builders.causal_transformer(
        config.transformer, d_token, patch_pixels, rngs=rngs
      )
    else:
      adaptive = variant == "mamba_length_adaptive"
      mamba_config = model_builders.mamba_config(
        config.mamba,
        discretization="length_adaptive" if adaptive else "fixed",
        length_ref=config.mamba.length_ref if adaptive else None,
      )
      input_proj = config.get("mamba_input_proj", True)  # absent from older config.json files
      if not input_proj and d_token != mamba_config.d_model:
        raise ValueError(
          f"config.model.mamba_input_proj = False feeds the tokens to the backbone directly: "
          f"config.model.d_token = {d_token} must equal config.model.mamba.d_model = "
          f"{mamba_config.d_model}"
        )
      self.backbone = mamba_jax.MambaModel(
        mamba_config, d_token, patch_pixels, rngs=rngs, input_proj=input_proj
      )
    # Drawn last, so that the Mamba variants built from one key share every other parameter
    # (paired starts: they differ only in how the step is formed). PyTorch's nn.Linear(1, d)
    # init, as the paper's `length_embeder`: kernel and bias U(-1, 1). A zero bias would leave
    # the token nearly blind to L at the start, since the first RMSNorm removes the scale of
    # kernel * L / scale.
    self.length_embed = (
      nnx.Linear(1, d_token, kernel_init=uniform_init(1.0), bias_init=uniform_init(1.0), rngs=rngs)
      if variant == "mamba_length_token"
      else None
    )
    # The token's input is L / scale (docs/design.md 4.4); absent from older config.json files,
    # whose runs used the paper's 100.
    self.length_token_scale = float(config.get("length_token_scale", 100.0))
    if not self.length_token_scale > 0:
      raise ValueError(
        f"config.model.length_token_scale = {self.length_token_scale!r}; expected a number > 0"
      )

  def __call__(
    self, context_patches, context_positions, query_positions, n_context=None, total_length=None
  ):
    """Predicted patches (batch, Q, P*P) in [-1, 1].

    context_patches (batch, Lb, P*P) and context_positions (batch, Lb, 2) hold a context built at
    a bucket length Lb; the first n_context (a scalar, default Lb) are this batch's context. The
    other Lb - n_context become left padding (exact: mamba_jax's and the transformer's left_pad),
    so one compiled step serves every L of a bucket. query_positions: (batch, Q, 2).

    total_length (a scalar, default n_context) is the L that length-aware models are told (the
    length token, the length-adaptive step): the stage analysis asks after k = n_context of L
    patches. The models are causal, so their outputs after k patches of L are what streaming
    the first k patches with L known and then the queries would give.
    """
    batch, bucket = context_patches.shape[:2]
    n_queries = query_positions.shape[1]
    n_context = jnp.asarray(bucket if n_context is None else n_context, jnp.int32)
    told = n_context if total_length is None else jnp.asarray(total_length, jnp.int32)
    patches = self.patch_proj(self.patch_conv(context_patches))
    prefix = jnp.concatenate([patches, context_positions], axis=-1)
    if self.length_embed is not None:
      length = told.astype(prefix.dtype) / self.length_token_scale
      length = jnp.broadcast_to(length, (batch, 1, 1))
      prefix = jnp.concatenate([self.length_embed(length), prefix], axis=1)
    # Pads first: [pad x (Lb - L)] [length token] [context 1..L]; then delimiter and queries.
    left_pad = bucket - n_context
    prefix = jnp.roll(prefix, left_pad, axis=1)
    queries = jnp.concatenate(
      [jnp.broadcast_to(self.query[...], (batch, n_queries, self.query.shape[0])), query_positions],
      axis=-1,
    )
    delimiter = jnp.broadcast_to(self.delimiter[...], (batch, 1, self.delimiter.shape[0]))
    tokens = jnp.concatenate([prefix, delimiter, queries], axis=1)
    left_pad = jnp.full((batch,), left_pad, jnp.int32)
    if self.variant == "transformer":
      outputs = self.backbone(tokens, left_pad=left_pad)
    else:
      # The length-adaptive step sees L = the number of context patches (docs/design.md 4.3).
      outputs = self.backbone(tokens, sequence_length=jnp.full((batch,), told), left_pad=left_pad)
    return 2.0 * jax.nn.sigmoid(outputs[:, -n_queries:].astype(jnp.float32)) - 1.0


def squared_error(model, batch):
  """Per-example mean squared pixel error at the queries, (batch,). batch holds the arrays of
  `patches.patch_sequences` and optionally n_context and total_length (batch,), each equal over
  the batch."""
  n_context = batch["n_context"][0] if "n_context" in batch else None
  total_length = batch["total_length"][0] if "total_length" in batch else None
  prediction = model(
    batch["context_patches"],
    batch["context_positions"],
    batch["query_positions"],
    n_context,
    total_length,
  )
  return jnp.mean(jnp.square(prediction - batch["query_targets"]), axis=(1, 2))
