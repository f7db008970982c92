"""S4D: a non-selective diagonal SSM, the baseline that isolates what selectivity buys.

Two kernels (docs/design.md section 3.6):
- "scan" (the default, S4D-Real): the selective-scan op with input-independent parameters: a
  learned per-channel step exp(log_dt) (no softplus), A = -exp(A_log) = -(1..N), learned real
  B and C shared over time and batch, by n_groups contiguous channel groups (the op's input is
  dt B u, Euler, as Mamba's).
- "fft" (Grazzi et al.'s S4, the S4D paper's minimal code): zero-order hold, computed exactly as a
  causal FFT convolution (s4d_kernel.py); B = 1 folded into C; D ~ N(0, 1). init "lin" is
  S4D-Lin, A = -1/2 + i pi n over N / 2 conjugate pairs with complex C; init "real" is S4D-Real,
  A = -(n + 1) over N real modes with real C.
Layer: norm "pre_rms" (the default) is x + f(RMSNorm(x)) with a final RMSNorm; "post_layer" is
LayerNorm(x + f(x)) with no final norm (the paper's S4 block). f is the SSM with skip D, GELU,
dropout, Linear to 2 d_model with GLU, dropout. Dropout zeroes whole channels of a sequence
(torch's Dropout1d, as the paper) and is active only when a call passes dropout_key.
"""

import math
from typing import cast

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax.baselines.s4d_kernel import causal_convolution, s4d_kernel
from mamba_jax.layers import RMSNorm, torch_linear
from mamba_jax_kernels.selective_scan import selective_scan

KERNELS = ("scan", "fft")
INITS = ("real", "lin")
NORMS = ("pre_rms", "post_layer")


class S4DLayer(nnx.Module):
  def __init__(
    self,
    d_model,
    *,
    d_state,
    n_groups,
    kernel,
    init,
    norm,
    dropout,
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
    self.kernel = kernel
    self.post_norm = norm == "post_layer"
    self.scan_implementation = scan_implementation
    if not self.post_norm:
      self.norm = RMSNorm(d_model, dtype=dtype, param_dtype=param_dtype)
    self.log_dt = nnx.Param(
      jax.random.uniform(rngs.params(), (d_model,), jnp.float32, math.log(dt_min), math.log(dt_max))
    )
    if kernel == "scan":
      self.A_log = nnx.Param(
        jnp.log(jnp.broadcast_to(jnp.arange(1, d_state + 1, dtype=jnp.float32), (d_model, d_state)))
      )
      self.ssm_B = nnx.Param(jnp.ones((n_groups, d_state), jnp.float32))
      self.ssm_C = nnx.Param(
        jax.random.normal(rngs.params(), (n_groups, d_state), jnp.float32) / math.sqrt(d_state)
      )
      self.D = nnx.Param(jnp.ones((d_model,), jnp.float32))
    else:
      self._init_fft(d_model, d_state, n_groups, init, rngs)
    self.output_proj = torch_linear(
      d_model, 2 * d_model, use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs
    )
    if self.post_norm:
      self.norm = nnx.LayerNorm(
        d_model, epsilon=1e-5, dtype=dtype, param_dtype=param_dtype, rngs=rngs
      )
    # Channel dropout: one mask per (example, channel), shared by every position (axis 1).
    self.inner_dropout = nnx.Dropout(dropout, broadcast_dims=(1,), deterministic=True)
    self.output_dropout = nnx.Dropout(dropout, broadcast_dims=(1,), deterministic=True)

  def _init_fft(self, d_model, d_state, n_groups, init, rngs):
    """S4D-Lin: A_n = -1/2 + i pi n (n < N / 2), C ~ CN(0, 1); S4D-Real: A_n = -(n + 1)
    (n < N), C ~ N(0, 1). log_dt, A_log and A_imag per channel, C per group, D ~ N(0, 1)."""
    if init == "lin":
      if d_state % 2:
        raise ValueError(f"S4DModel: init 'lin' needs an even d_state (pairs), got {d_state}")
      modes = d_state // 2
      self.A_log = nnx.Param(jnp.full((d_model, modes), math.log(0.5), jnp.float32))
      self.A_imag = nnx.Param(
        jnp.broadcast_to(math.pi * jnp.arange(modes, dtype=jnp.float32), (d_model, modes))
      )
      # real and imaginary parts, each N(0, 1/2) (torch.randn of a complex tensor)
      self.ssm_C = nnx.Param(
        jax.random.normal(rngs.params(), (n_groups, modes, 2), jnp.float32) / math.sqrt(2.0)
      )
    else:
      self.A_log = nnx.Param(
        jnp.log(jnp.broadcast_to(jnp.arange(1, d_state + 1, dtype=jnp.float32), (d_model, d_state)))
      )
      self.A_imag = None
      self.ssm_C = nnx.Param(jax.random.normal(rngs.params(), (n_groups, d_state), jnp.float32))
    self.D = nnx.Param(jax.random.normal(rngs.params(), (d_model,), jnp.float32))

  def __call__(self, x, lengths=None, dropout_key=None):
    """dropout_key: None = deterministic (evaluation); a key draws this layer's two masks."""
    keys = (None, None) if dropout_key is None else tuple(jax.random.split(dropout_key))
    deterministic = dropout_key is None
    z = x if self.post_norm else self.norm(x)
    z = self.inner_dropout(
      jax.nn.gelu(self.ssm(z, lengths)), deterministic=deterministic, rngs=keys[0]
    )
    z = jax.nn.glu(self.output_proj(z), axis=-1)
    x = x + self.output_dropout(z, deterministic=deterministic, rngs=keys[1]).astype(x.dtype)
    return self.norm(x).astype(jnp.float32) if self.post_norm else x

  def ssm(self, u, lengths=None):
    """The diagonal SSM alone with its skip D, u (batch, length, d_model) -> same shape; outputs
    at positions >= lengths are 0 (docs/design.md section 2.3)."""
    if self.kernel == "fft":
      return self._ssm_fft(u, lengths)
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

  def _ssm_fft(self, u, lengths):
    length, d_model = u.shape[1], u.shape[2]
    C = self.ssm_C[...]
    if self.A_imag is not None:
      C = jax.lax.complex(C[..., 0], C[..., 1])
    C = jnp.repeat(C, d_model // C.shape[0], axis=0)  # group -> its contiguous channels
    A_imag = None if self.A_imag is None else self.A_imag[...]
    kernel = s4d_kernel(self.log_dt[...], self.A_log[...], A_imag, C, length)
    u32 = u.astype(jnp.float32)
    y = causal_convolution(u32, kernel) + u32 * self.D[...]
    if lengths is not None:
      y = jnp.where(jnp.arange(length)[None, :, None] < lengths[:, None, None], y, 0.0)
    return y.astype(u.dtype)


class S4DModel(nnx.Module):
  """inputs (batch, length, in_features) -> outputs (batch, length, out_features).

  lengths: optional (batch,) valid lengths of right-padded inputs; padding changes nothing at
  valid positions. d_state is N, the real state size per channel (N / 2 complex modes for
  init "lin"). n_groups: channel groups sharing B and C; None gives every channel its own.
  kernel, init, norm: see the module docstring; init "lin" needs kernel "fft". dropout: the
  rate, active only in calls given a dropout_key.
  """

  def __init__(
    self,
    in_features,
    out_features,
    *,
    d_model,
    n_layers,
    d_state=64,
    n_groups: int | None = 1,
    kernel="scan",
    init="real",
    norm="pre_rms",
    dropout=0.0,
    dt_min=1e-3,
    dt_max=0.1,
    scan_implementation="auto",
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs,
  ):
    for name, value, allowed in (("kernel", kernel, KERNELS), ("init", init, INITS)):
      if value not in allowed:
        raise ValueError(f"S4DModel: {name} = {value!r}; expected one of {allowed}")
    if norm not in NORMS:
      raise ValueError(f"S4DModel: norm = {norm!r}; expected one of {NORMS}")
    if kernel == "scan" and init != "real":
      raise ValueError(
        "S4DModel: kernel 'scan' is real-only (the selective-scan op); init 'lin' "
        "needs kernel 'fft'"
      )
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"S4DModel: dropout = {dropout} must be in [0, 1)")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.dtype = dtype
    self.input_proj = torch_linear(in_features, d_model, use_bias=True, **kw)
    self.layers = nnx.List(
      [
        S4DLayer(
          d_model,
          d_state=d_state,
          n_groups=d_model if n_groups is None else n_groups,
          kernel=kernel,
          init=init,
          norm=norm,
          dropout=dropout,
          dt_min=dt_min,
          dt_max=dt_max,
          scan_implementation=scan_implementation,
          **kw,
        )
        for _ in range(n_layers)
      ]
    )
    # post-LayerNorm layers end normalised already: the paper's S4 has no final norm
    self.norm_f = (
      RMSNorm(d_model, dtype=dtype, param_dtype=param_dtype) if norm == "pre_rms" else None
    )
    self.output_proj = torch_linear(d_model, out_features, use_bias=True, **kw)

  def __call__(
    self,
    inputs: jax.Array,
    lengths: jax.Array | None = None,
    return_residuals: bool = False,
    *,
    dropout_key: jax.Array | None = None,
  ) -> jax.Array | tuple[jax.Array, list[jax.Array]]:
    """inputs (batch, length, in_features) -> outputs (batch, length, out_features).

    With return_residuals also the residual stream entering each layer and after the last
    one (n_layers + 1 arrays), for probing; `read_out_residual` maps one to outputs.
    dropout_key: None (the default) runs deterministically; a key applies dropout (training)."""
    x = self.input_proj(inputs.astype(self.dtype)).astype(jnp.float32)
    residuals = []
    for i, layer in enumerate(self.layers):
      residuals.append(x)
      key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
      x = layer(x, lengths, key)
    residuals.append(x)
    out = self.read_out_residual(x)
    return (out, residuals) if return_residuals else out

  def read_out_residual(self, residual: jax.Array) -> jax.Array:
    """A residual stream (batch, length, d_model) through the final norm (if any) and read-out:
    (batch, length, out_features)."""
    return self.output_proj(residual if self.norm_f is None else self.norm_f(residual))
