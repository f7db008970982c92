"""Mamba models: the residual stack, a continuous-input model and a language model.

Both models share one interface: `model(inputs, lengths=None, sequence_length=None,
left_pad=None)` where `lengths` (batch,) marks the valid prefix of each right-padded example and
`left_pad` (batch,) the number of leading padding positions of a left-padded one (padding changes
nothing at valid positions either way), and `sequence_length` overrides the L of the
length-adaptive step (default: `lengths`, else the padded length). Streaming decode
(`init_cache`, `prefill`, `step`) lives in `mamba_jax.decode`; the methods here forward to it.

The stack has two layouts of the same parameters (MambaConfig.scan_layers): a list of blocks run
by a Python loop, or one block whose parameters carry a leading n_layers axis, run by
`nnx.scan`, so that compile time does not grow with depth. `stack_layers` and `unstack_layers`
convert a state between them.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax import decode
from mamba_jax.block import LayerCache, ResidualBlock
from mamba_jax.config import MambaConfig
from mamba_jax.discretization import resolve_sequence_length
from mamba_jax.layers import RMSNorm, torch_linear

# MambaStack's attribute for the per-layer layout (an nnx.List) and for the stacked one (one
# ResidualBlock whose every variable has a leading n_layers axis); state paths use these names.
PER_LAYER = "layers"
STACKED_LAYERS = "stacked_layers"
_BLOCK_CHILDREN = frozenset({"norm", "mixer"})  # the children of a ResidualBlock's state

# fn(layer, carry, per-layer input) -> (carry, per-layer output), threaded through the layers.
LayerFn = Callable[[ResidualBlock, Any, Any], tuple[Any, Any]]
ModuleT = TypeVar("ModuleT", bound=nnx.Module)


class MambaStack(nnx.Module):
  """n_layers pre-norm residual Mamba blocks and the final RMSNorm (mamba_ssm's MixerModel body).

  Parameters live in `layers` (nnx.List of ResidualBlock) or, with config.resolved_scan_layers,
  in `stacked_layers` (one ResidualBlock, every variable stacked on a leading n_layers axis).
  Both layouts draw the same initial parameters from the same rngs.
  """

  def __init__(self, config: MambaConfig, *, rngs: nnx.Rngs):
    self.config = config
    blocks = [ResidualBlock(config, rngs=rngs) for _ in range(config.n_layers)]
    if config.resolved_scan_layers:
      self.stacked_layers = _stack_modules(blocks)
    else:
      self.layers = nnx.List(blocks)
    self.norm_f = RMSNorm(
      config.d_model, eps=config.rms_norm_eps, dtype=config.dtype, param_dtype=config.param_dtype
    )

  def __call__(
    self,
    hidden: jax.Array,
    lengths: jax.Array | None = None,
    sequence_length: jax.Array | float | None = None,
    return_residuals: bool = False,
    left_pad: jax.Array | None = None,
  ) -> jax.Array | tuple[jax.Array, list[jax.Array]]:
    """hidden (batch, length, d_model) -> normalised hidden (batch, length, d_model) in the
    compute dtype.

    lengths, left_pad: optional (batch,) ints; sequence_length: scalar or (batch,) L of the
    length-adaptive step. With return_residuals also the residual stream entering each layer
    and after the last one (n_layers + 1 arrays (batch, length, d_model) in the residual dtype),
    for probing.
    """
    batch, length, _ = hidden.shape
    sequence_length = resolve_sequence_length(sequence_length, lengths, batch, length, left_pad)

    def apply(layer, residual, _):
      return (
        layer(residual, lengths, sequence_length, left_pad),
        residual if return_residuals else None,
      )

    if self.config.remat:
      apply = nnx.remat(apply)
    residual, entering = self.run_layers(apply, self.to_residual(hidden))
    out = self.norm_f(residual)
    return (out, [*entering, residual]) if return_residuals else out

  @property
  def residual_dtype(self) -> Any:
    return jnp.float32 if self.config.residual_in_fp32 else self.config.dtype

  def to_residual(self, hidden: jax.Array) -> jax.Array:
    """hidden in the residual stream's dtype, as every block casts its input (the carry of the
    scanned layout must keep one dtype)."""
    return hidden.astype(self.residual_dtype)

  def run_layers(self, fn: LayerFn, carry: Any, per_layer: Any = None) -> tuple[Any, Any]:
    """Threads `carry` through the layers in order: carry, y_i = fn(layer_i, carry, x_i).

    per_layer (the x_i) and the returned outputs (the y_i): a sequence over the layers in the
    per-layer layout, a pytree with a leading n_layers axis in the stacked one (None: nothing).
    A Python loop over `layers`, or one `jax.lax.scan` over the state of `stacked_layers`, each
    step merging one layer's slice back into a ResidualBlock. (Plain lax.scan rather than
    nnx.scan: the layers are read-only here, and nnx.scan refuses modules merged in an outer
    trace, as `decode.generate` does inside its token loop.)
    """
    if self.config.resolved_scan_layers:
      graphdef, state = nnx.split(self.stacked_layers)

      def body(carry, layer_state_and_input):
        layer_state, layer_input = layer_state_and_input
        return fn(cast(ResidualBlock, nnx.merge(graphdef, layer_state)), carry, layer_input)

      return jax.lax.scan(body, carry, (state, per_layer))
    outputs = []
    for index, layer in enumerate(self.layers):
      carry, output = fn(layer, carry, None if per_layer is None else per_layer[index])
      outputs.append(output)
    return carry, tuple(outputs)

  def init_cache(self, batch: int) -> tuple[LayerCache, ...] | LayerCache:
    """Zero decode states of every layer: a tuple of LayerCache (per-layer layout) or one
    LayerCache with a leading n_layers axis (stacked layout)."""
    if self.config.resolved_scan_layers:
      empty = self.stacked_layers.mixer.init_cache(batch)
      return jax.tree.map(lambda x: jnp.broadcast_to(x, (self.config.n_layers, *x.shape)), empty)
    return tuple(layer.mixer.init_cache(batch) for layer in self.layers)


def _stack_modules(modules: Sequence[ModuleT]) -> ModuleT:
  """One module of the same structure whose every variable stacks theirs on a leading axis."""
  graphdef, _ = nnx.split(modules[0])
  states = [nnx.state(module) for module in modules]
  return cast(ModuleT, nnx.merge(graphdef, jax.tree.map(lambda *xs: jnp.stack(xs), *states)))


def stack_layers(state: Mapping[Any, Any]) -> Mapping[Any, Any]:
  """A model's state in the per-layer layout -> the same parameters in the stacked layout.

  state: nnx.state(model) (whole or filtered, e.g. nnx.Param) or a nested dict of arrays (a
  restored checkpoint) of any module holding MambaStacks. Every `layers/<i>/<path>` of a
  MambaStack becomes `stacked_layers/<path>`, stacked on a new leading axis. Load the result into
  the model built with scan_layers=True (nnx.update).
  """
  return _rebuild(state, _stack_block_states)


def unstack_layers(state: Mapping[Any, Any]) -> Mapping[Any, Any]:
  """The inverse of `stack_layers`: `stacked_layers/<path>` -> `layers/<i>/<path>`."""
  return _rebuild(state, _unstack_block_states)


def _rebuild(tree, convert):
  if isinstance(tree, nnx.State):  # nested plain dicts inside, as its pytree flattening sees them
    return nnx.State(_rebuild(tree.raw_mapping, convert))
  if not isinstance(tree, Mapping):
    return tree
  return convert({key: _rebuild(value, convert) for key, value in tree.items()})


def _is_block_list(tree) -> bool:
  """True for the state of a MambaStack's nnx.List of ResidualBlocks: keys 0..n-1 (ints, or
  digit strings after some checkpoint round trips), each a block's state."""
  if not isinstance(tree, Mapping) or not tree:
    return False
  keys = sorted(int(key) for key in tree if str(key).isdigit())
  return (
    len(keys) == len(tree)
    and keys == list(range(len(tree)))
    and all(
      isinstance(block, Mapping) and set(block) <= _BLOCK_CHILDREN and block
      for block in tree.values()
    )
  )


def _stack_block_states(items: dict[Any, Any]) -> dict[Any, Any]:
  blocks = items.get(PER_LAYER)
  if blocks is None or STACKED_LAYERS in items or not _is_block_list(blocks):
    return items
  ordered = [block for _, block in sorted(blocks.items(), key=lambda item: int(item[0]))]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *ordered)
  return {
    (STACKED_LAYERS if key == PER_LAYER else key): (stacked if key == PER_LAYER else value)
    for key, value in items.items()
  }


def _unstack_block_states(items: dict[Any, Any]) -> dict[Any, Any]:
  stacked = items.get(STACKED_LAYERS)
  if not isinstance(stacked, Mapping):
    return items
  n_layers = jax.tree.leaves(stacked)[0].shape[0]
  blocks = {index: jax.tree.map(lambda x, i=index: x[i], stacked) for index in range(n_layers)}
  return {
    (PER_LAYER if key == STACKED_LAYERS else key): (blocks if key == STACKED_LAYERS else value)
    for key, value in items.items()
  }


class _Decodable(nnx.Module):
  """Streaming-decode methods shared by the models (see `mamba_jax.decode`)."""

  def init_cache(
    self, batch: int, sequence_length: jax.Array | float | None = None
  ) -> decode.DecodeCache:
    return decode.init_cache(cast("MambaModel | MambaLM", self), batch, sequence_length)

  def prefill(
    self,
    inputs: jax.Array,
    lengths: jax.Array | None = None,
    sequence_length: jax.Array | float | None = None,
  ) -> tuple[jax.Array, decode.DecodeCache]:
    return decode.prefill(cast("MambaModel | MambaLM", self), inputs, lengths, sequence_length)

  def step(
    self, inputs: jax.Array, cache: decode.DecodeCache
  ) -> tuple[jax.Array, decode.DecodeCache]:
    return decode.step(cast("MambaModel | MambaLM", self), inputs, cache)


class MambaModel(_Decodable):
  """Continuous sequences: Linear(in_features -> d_model) -> Mamba stack -> Linear(-> out_features).

  For patch sequences (vision) and in-context function regression. With input_proj=False the
  inputs enter the residual stream as they are (in_features must equal d_model), as the
  image-reconstruction paper's tokens do.
  """

  def __init__(
    self,
    config: MambaConfig,
    in_features: int,
    out_features: int,
    *,
    rngs: nnx.Rngs,
    input_proj: bool = True,
  ):
    self.config = config
    if not input_proj and in_features != config.d_model:
      raise ValueError(
        f"MambaModel(input_proj=False): in_features = {in_features} must equal "
        f"d_model = {config.d_model}, since the inputs enter the residual stream unchanged"
      )
    self.input_proj = (
      torch_linear(
        in_features,
        config.d_model,
        use_bias=True,
        dtype=config.dtype,
        param_dtype=config.param_dtype,
        rngs=rngs,
      )
      if input_proj
      else None
    )
    self.backbone = MambaStack(config, rngs=rngs)
    self.output_proj = torch_linear(
      config.d_model,
      out_features,
      use_bias=True,
      dtype=config.dtype,
      param_dtype=config.param_dtype,
      rngs=rngs,
    )

  def __call__(
    self,
    inputs: jax.Array,
    lengths: jax.Array | None = None,
    sequence_length: jax.Array | float | None = None,
    left_pad: jax.Array | None = None,
    return_residuals: bool = False,
  ) -> jax.Array | tuple[jax.Array, list[jax.Array]]:
    """inputs (batch, length, in_features) -> outputs (batch, length, out_features) in the
    compute dtype.

    With return_residuals also the residual stream entering each layer and after the last
    one (n_layers + 1 arrays (batch, length, d_model)), for probing; `read_out_residual` maps
    one to outputs.
    """
    hidden = self.backbone(
      self.embed(inputs),
      lengths,
      sequence_length,
      return_residuals=return_residuals,
      left_pad=left_pad,
    )
    if isinstance(hidden, tuple):  # return_residuals
      return self.read_out(hidden[0]), hidden[1]
    return self.read_out(hidden)

  def embed(self, inputs: jax.Array) -> jax.Array:
    """(batch, [length,] in_features) -> (batch, [length,] d_model)."""
    inputs = inputs.astype(self.config.dtype)
    return inputs if self.input_proj is None else self.input_proj(inputs)

  def read_out_residual(self, residual: jax.Array) -> jax.Array:
    """A residual stream (batch, length, d_model) through the final norm and read-out:
    (batch, length, out_features)."""
    return self.read_out(self.backbone.norm_f(residual))

  def read_out(self, hidden: jax.Array) -> jax.Array:
    """Normalised hidden (batch, [length,] d_model) -> (batch, [length,] out_features)."""
    return self.output_proj(hidden)


class MambaLM(_Decodable):
  """Token language model (mamba_ssm's MambaLMHeadModel): embedding -> stack -> tied head.

  The vocabulary is padded to a multiple of config.pad_vocab_size_multiple; logits cover the
  padded vocabulary and are returned in float32.
  """

  def __init__(self, config: MambaConfig, *, rngs: nnx.Rngs):
    if config.vocab_size is None:
      raise ValueError("MambaConfig.vocab_size = None; MambaLM needs a vocabulary size")
    self.config = config
    vocab = cast(int, config.padded_vocab_size)  # not None: vocab_size was checked above
    self.embedding = nnx.Embed(
      vocab,
      config.d_model,
      dtype=config.dtype,
      param_dtype=config.param_dtype,
      embedding_init=nnx.initializers.normal(config.initializer_range),
      rngs=rngs,
    )
    self.backbone = MambaStack(config, rngs=rngs)
    self.lm_head = (
      None
      if config.tie_embeddings
      else torch_linear(
        config.d_model,
        vocab,
        use_bias=False,
        dtype=config.dtype,
        param_dtype=config.param_dtype,
        rngs=rngs,
      )
    )

  def __call__(
    self,
    tokens: jax.Array,
    lengths: jax.Array | None = None,
    sequence_length: jax.Array | float | None = None,
    left_pad: jax.Array | None = None,
  ) -> jax.Array:
    """tokens (batch, length) int -> logits (batch, length, padded vocab) float32."""
    hidden = self.backbone(self.embed(tokens), lengths, sequence_length, left_pad=left_pad)
    return self.read_out(cast(jax.Array, hidden))

  def embed(self, tokens: jax.Array) -> jax.Array:
    """(batch, [length]) int -> (batch, [length,] d_model)."""
    return self.embedding(tokens)

  def read_out(self, hidden: jax.Array) -> jax.Array:
    """Normalised hidden (batch, [length,] d_model) -> logits (batch, [length,] vocab) float32."""
    logits = self.embedding.attend(hidden) if self.lm_head is None else self.lm_head(hidden)
    return logits.astype(jnp.float32)


def count_parameters(model: nnx.Module) -> int:
  """Number of scalars in the model's nnx.Param variables (works on nnx.eval_shape models)."""
  return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
