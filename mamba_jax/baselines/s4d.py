"""S4D: a non-selective diagonal SSM, the baseline that isolates what selectivity buys.

The same selective-scan op runs it with input-independent parameters: a learned per-channel step
exp(log_dt) (no softplus), A = -exp(A_log) with the S4D-real init, and learned B and C shared over
time and batch (broadcast to the op's (batch, length, groups, d_state) layout; groups=1 by default,
n_groups=d_model gives every channel its own B and C as in S4D proper). Block layout of the S4D
reference model: pre-norm, SSM with skip D, GELU, Linear to 2*d_model with GLU, residual.
"""

import math
from typing import cast

import jax
import jax.numpy as jnp
from flax import nnx

from kernels.selective_scan import selective_scan
from mamba_jax.layers import RMSNorm, torch_linear


class S4DLayer(nnx.Module):
  def __init__(
    self,
    d_model,
    *,
    d_state,
    n_groups,
    dt_min,
    dt_max,
    scan_implementation,
    dtype,
    param_dtype,
    rngs,
  ):
    if d_model % n_groups:
      raise ValueError(f"S4DModel: n_groups = {n_groups} does not divide d_model = {d_model}")
    self.dtype = dtype
    self.scan_implementation = scan_implementation
    self.norm = RMSNorm(d_model, dtype=dtype, param_dtype=param_dtype)
    self.log_dt = nnx.Param(
      jax.random.uniform(rngs.params(), (d_model,), jnp.float32, math.log(dt_min), math.log(dt_max))
    )
    self.A_log = nnx.Param(
      jnp.log(jnp.broadcast_to(jnp.arange(1, d_state + 1, dtype=jnp.float32), (d_model, d_state)))
    )
    self.ssm_B = nnx.Param(jnp.ones((n_groups, d_state), jnp.float32))
    self.ssm_C = nnx.Param(
      jax.random.normal(rngs.params(), (n_groups, d_state), jnp.float32) / math.sqrt(d_state)
    )
    self.D = nnx.Param(jnp.ones((d_model,), jnp.float32))
    self.output_proj = torch_linear(
      d_model, 2 * d_model, use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs
    )

  def __call__(self, x, lengths=None):
    y = jax.nn.glu(self.output_proj(jax.nn.gelu(self.ssm(self.norm(x), lengths))), axis=-1)
    return x + y.astype(x.dtype)

  def ssm(self, u, lengths=None):
    """The diagonal SSM alone, u (batch, length, d_model) -> same shape: input-independent step,
    B and C broadcast over batch and time into the selective-scan op."""
    batch, length, d_model = u.shape
    groups, d_state = self.ssm_B.shape
    shape = (batch, length, groups, d_state)
    return cast(
      jax.Array,
      selective_scan(
        u,
        jnp.broadcast_to(jnp.exp(self.log_dt[...]), (batch, length, d_model)),
        -jnp.exp(self.A_log[...]),
        jnp.broadcast_to(self.ssm_B[...], shape),
        jnp.broadcast_to(self.ssm_C[...], shape),
        D=self.D[...],
        lengths=lengths,
        implementation=self.scan_implementation,
      ),
    )


class S4DModel(nnx.Module):
  """inputs (batch, length, in_features) -> outputs (batch, length, out_features).

  lengths: optional (batch,) valid lengths; the scan freezes the state past them, so padding
  changes nothing at valid positions.
  """

  def __init__(
    self,
    in_features,
    out_features,
    *,
    d_model,
    n_layers,
    d_state=64,
    n_groups=1,
    dt_min=1e-3,
    dt_max=0.1,
    scan_implementation="auto",
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs,
  ):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.dtype = dtype
    self.input_proj = torch_linear(in_features, d_model, use_bias=True, **kw)
    self.layers = nnx.List(
      [
        S4DLayer(
          d_model,
          d_state=d_state,
          n_groups=n_groups,
          dt_min=dt_min,
          dt_max=dt_max,
          scan_implementation=scan_implementation,
          **kw,
        )
        for _ in range(n_layers)
      ]
    )
    self.norm_f = RMSNorm(d_model, dtype=dtype, param_dtype=param_dtype)
    self.output_proj = torch_linear(d_model, out_features, use_bias=True, **kw)

  def __call__(
    self, inputs: jax.Array, lengths: jax.Array | None = None, return_residuals: bool = False
  ) -> jax.Array | tuple[jax.Array, list[jax.Array]]:
    """inputs (batch, length, in_features) -> outputs (batch, length, out_features).

    With return_residuals also the residual stream entering each layer and after the last
    one (n_layers + 1 arrays), for probing; `read_out_residual` maps one to outputs."""
    x = self.input_proj(inputs.astype(self.dtype)).astype(jnp.float32)
    residuals = []
    for layer in self.layers:
      residuals.append(x)
      x = layer(x, lengths)
    residuals.append(x)
    out = self.read_out_residual(x)
    return (out, residuals) if return_residuals else out

  def read_out_residual(self, residual: jax.Array) -> jax.Array:
    """A residual stream (batch, length, d_model) through the final norm and read-out:
    (batch, length, out_features)."""
    return self.output_proj(self.norm_f(residual))
