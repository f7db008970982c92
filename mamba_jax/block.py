"""The Mamba mixer (mamba_ssm's `Mamba` module) and its pre-norm residual wrapper.

Parameter shapes and initialisation follow mamba_ssm (docs/design.md, the block and its
initialisation), with Flax layouts:
Linear kernels are (in, out), the conv weight is (d_inner, d_conv). One deliberate naming change:
dt_proj has no bias of its own; its bias is the float32 parameter `dt_bias` (as in mamba_ssm's
Mamba2), so that it stays float32 under any param_dtype and is easy to exclude from weight decay.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.discretization import (
  Discretization,
  resolve_sequence_length,
  valid_after_left_pad,
)
from mamba_jax.layers import CausalConv1d, RMSNorm, torch_linear, uniform_init
from mamba_jax_kernels.selective_scan import make_options, selective_scan, selective_scan_step


class LayerCache(NamedTuple):
  """Decode state of one mixer: the last d_conv conv inputs and the SSM state."""

  conv_state: jax.Array  # (batch, d_inner, d_conv), compute dtype, oldest input first (empty
  # when d_conv = 0)
  ssm_state: jax.Array  # (batch, d_inner, d_state), float32


def init_dt_bias(key, config):
  """Inverse softplus of dt ~ log-uniform in [dt_min, dt_max], floored at dt_init_floor."""
  log_min, log_max = math.log(config.dt_min), math.log(config.dt_max)
  dt = jnp.exp(jax.random.uniform(key, (config.d_inner,), jnp.float32, log_min, log_max))
  dt = jnp.maximum(dt, config.dt_init_floor)
  return dt + jnp.log(-jnp.expm1(-dt))


def scan_options(config):
  """The selective-scan op's options object from MambaConfig's scan_* fields (None: defaults).

  Fields left at their defaults are not passed; a field the chosen implementation has no option
  for (a chunk size for "reference" or "auto", interpret for "xla") raises here, when the block
  is built, rather than being ignored.
  """
  fields = {}
  if config.scan_chunk_size is not None:
    fields["chunk_size"] = config.scan_chunk_size
  if config.scan_interpret:
    fields["interpret"] = True
  try:
    return make_options(config.scan_implementation, **fields)
  except ValueError as error:
    raise ValueError(
      f"MambaConfig scan_implementation={config.scan_implementation!r} with "
      f"scan_chunk_size={config.scan_chunk_size!r}, scan_interpret="
      f"{config.scan_interpret!r}: {error}"
    ) from None


def init_A_log(config):
  """S4D-real: A_log[d, n] = log(n + 1), so A = -exp(A_log) = -(1..d_state) for every channel."""
  A = jnp.broadcast_to(
    jnp.arange(1, config.d_state + 1, dtype=jnp.float32), (config.d_inner, config.d_state)
  )
  return jnp.log(A)


class MambaBlock(nnx.Module):
  """in_proj -> (x, z); x -> causal conv -> SiLU -> selective scan gated by SiLU(z) -> out_proj.

  With d_conv = 0 there is no conv (no conv1d parameters): the scan reads SiLU(x).
  """

  def __init__(self, config, *, rngs):
    self.config = config
    c = config
    d_inner, dt_rank = c.d_inner, c.resolved_dt_rank
    dense = dict(dtype=c.dtype, param_dtype=c.param_dtype, rngs=rngs)
    self.in_proj = torch_linear(c.d_model, 2 * d_inner, use_bias=c.bias, **dense)
    self.conv1d = (
      CausalConv1d(d_inner, c.d_conv, use_bias=c.conv_bias, **dense) if c.d_conv else None
    )
    self.x_proj = torch_linear(d_inner, dt_rank + 2 * c.d_state, use_bias=False, **dense)
    self.dt_proj = nnx.Linear(
      dt_rank,
      d_inner,
      use_bias=False,
      kernel_init=uniform_init(dt_rank**-0.5 * c.dt_scale),
      **dense,
    )
    self.dt_bias = nnx.Param(init_dt_bias(rngs.params(), c))
    self.A_log = nnx.Param(init_A_log(c))
    self.D = nnx.Param(jnp.ones((d_inner,), jnp.float32))
    self.discretization = Discretization(c)
    out_scale = 1.0 / math.sqrt(c.n_layers) if c.rescale_prenorm_residual else 1.0
    self.out_proj = torch_linear(d_inner, c.d_model, use_bias=c.bias, scale=out_scale, **dense)
    scan_options(c)  # a scan setting the implementation has no option for fails here

  def __call__(
    self,
    hidden: jax.Array,
    lengths: jax.Array | None = None,
    sequence_length: jax.Array | float | None = None,
    left_pad: jax.Array | None = None,
  ) -> jax.Array:
    """hidden (batch, length, d_model) -> (batch, length, d_model) in the compute dtype.

    lengths: optional (batch,) valid lengths (steps past them leave the state alone and output 0
    before out_proj). sequence_length: L of the length-adaptive step, scalar or (batch,); default
    lengths, else the padded length (ignored by "fixed"). left_pad: optional (batch,) number of
    leading padding steps: their conv inputs are zeroed and their step is 0, so the state is
    still zero when the example starts and the causal conv sees the zeros it sees at a true
    start: the valid positions get exactly the unpadded outputs (their padding outputs are
    meaningless).
    """
    return self.forward(hidden, lengths, sequence_length, left_pad=left_pad)[0]

  def forward(
    self,
    hidden: jax.Array,
    lengths: jax.Array | None = None,
    sequence_length: jax.Array | float | None = None,
    return_cache: bool = False,
    left_pad: jax.Array | None = None,
  ) -> tuple[jax.Array, LayerCache | None]:
    """As __call__, returning (output (batch, length, d_model), cache); the cache is the
    LayerCache after each example's last valid step with return_cache, else None."""
    c = self.config
    if self.discretization.adaptive:
      sequence_length = resolve_sequence_length(
        sequence_length, lengths, *hidden.shape[:2], left_pad=left_pad
      )
    valid = valid_after_left_pad(left_pad, *hidden.shape[:2])
    x, z = jnp.split(self.in_proj(hidden.astype(c.dtype)), 2, axis=-1)
    if valid is not None:
      x = jnp.where(valid[..., None], x, 0)
    u = jax.nn.silu(x if self.conv1d is None else self.conv1d(x))
    dt, B, C = self._project_dt_B_C(u)
    step = self.discretization.scan_arguments(dt, self.dt_bias[...], sequence_length, valid)
    # Every implementation computes the final state anyway; unused, XLA drops it.
    y, ssm_state = selective_scan(
      u,
      step["delta"],
      self._A(),
      B,
      C,
      D=self.D[...],
      z=z,
      delta_bias=step["delta_bias"],
      delta_softplus=step["delta_softplus"],
      lengths=lengths,
      return_final_state=True,
      implementation=c.scan_implementation,
      options=scan_options(c),
    )
    if not return_cache:
      return self.out_proj(y), None
    return self.out_proj(y), LayerCache(_last_inputs(x, lengths, c.d_conv), ssm_state)

  def init_cache(self, batch: int) -> LayerCache:
    """Zero conv inputs (batch, d_inner, d_conv) and zero SSM state (batch, d_inner, d_state)."""
    c = self.config
    return LayerCache(
      jnp.zeros((batch, c.d_inner, c.d_conv), c.dtype),
      jnp.zeros((batch, c.d_inner, c.d_state), jnp.float32),
    )

  def step(
    self, hidden: jax.Array, cache: LayerCache, sequence_length: jax.Array | None = None
  ) -> tuple[jax.Array, LayerCache]:
    """One token: hidden (batch, d_model), cache LayerCache -> (output (batch, d_model), cache).

    sequence_length: optional (batch,) L of the length-adaptive step (required by it). The SSM
    update is the op's single step (`selective_scan_step`), with the step size formed by the
    discretisation as in the forward.
    """
    c = self.config
    x, z = jnp.split(self.in_proj(hidden.astype(c.dtype)), 2, axis=-1)
    conv_state = cache.conv_state
    if self.conv1d is not None:
      x, conv_state = self.conv1d.step(x, conv_state)
    u = jax.nn.silu(x)
    dt, B, C = self._project_dt_B_C(u)
    delta = self.discretization.step_size(dt, self.dt_bias[...], sequence_length)  # (batch, d)
    y, ssm_state = selective_scan_step(
      cache.ssm_state, u, delta, self._A(), B, C, D=self.D[...], z=z
    )
    return self.out_proj(y), LayerCache(conv_state, ssm_state)

  def _A(self):
    return -jnp.exp(self.A_log[...].astype(jnp.float32))

  def _project_dt_B_C(self, u):
    c = self.config
    dt_rank = c.resolved_dt_rank
    x_dbl = self.x_proj(u)
    dt, B, C = jnp.split(x_dbl, [dt_rank, dt_rank + c.d_state], axis=-1)
    return self.dt_proj(dt), B, C


def _last_inputs(x, lengths, d_conv):
  """The conv inputs x[len - d_conv : len] per example as (batch, d_inner, d_conv), zero-padded."""
  batch, length, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (d_conv, 0), (0, 0)))
  ends = jnp.full((batch,), length) if lengths is None else lengths
  index = ends[:, None] + jnp.arange(d_conv)[None, :]  # padded position of x[len - d_conv + k]
  window = jnp.take_along_axis(padded, index[:, :, None], axis=1)  # (batch, d_conv, d_inner)
  return jnp.swapaxes(window, 1, 2)


class ResidualBlock(nnx.Module):
  """Pre-norm residual: x + mixer(RMSNorm(x)), the residual stream in float32 if so configured."""

  def __init__(self, config, *, rngs):
    self.config = config
    self.norm = RMSNorm(
      config.d_model, eps=config.rms_norm_eps, dtype=config.dtype, param_dtype=config.param_dtype
    )
    self.mixer = MambaBlock(config, rngs=rngs)

  def __call__(
    self,
    residual: jax.Array,
    lengths: jax.Array | None = None,
    sequence_length: jax.Array | float | None = None,
    left_pad: jax.Array | None = None,
  ) -> jax.Array:
    """residual (batch, length, d_model) -> (batch, length, d_model) in residual_dtype; the
    other arguments as MambaBlock's."""
    return self.forward(residual, lengths, sequence_length, left_pad=left_pad)[0]

  def forward(
    self,
    residual: jax.Array,
    lengths: jax.Array | None = None,
    sequence_length: jax.Array | float | None = None,
    return_cache: bool = False,
    left_pad: jax.Array | None = None,
  ) -> tuple[jax.Array, LayerCache | None]:
    """As __call__, with the mixer's LayerCache (or None) as MambaBlock.forward."""
    residual = residual.astype(self.residual_dtype)
    out, cache = self.mixer.forward(
      self.norm(residual), lengths, sequence_length, return_cache, left_pad
    )
    return residual + out.astype(self.residual_dtype), cache

  def step(
    self, residual: jax.Array, cache: LayerCache, sequence_length: jax.Array | None = None
  ) -> tuple[jax.Array, LayerCache]:
    """One token: residual (batch, d_model) -> (residual (batch, d_model), cache)."""
    residual = residual.astype(self.residual_dtype)
    out, cache = self.mixer.step(self.norm(residual), cache, sequence_length)
    return residual + out.astype(self.residual_dtype), cache

  @property
  def residual_dtype(self):
    return jnp.float32 if self.config.residual_in_fp32 else self.config.dtype
