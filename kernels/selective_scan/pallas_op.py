"""The Pallas selective scan: padding, layout, `jax.custom_vjp` and the choice of kernel variant.

Pallas has no autodiff rule for `pallas_call`, so the op is a custom VJP whose backward is a
second kernel. The forward saves only the state at each chunk boundary; the backward recomputes
states chunk by chunk. Length is padded to a whole number of chunks (padded steps are masked
by `lengths`, so they are identity steps) and d_inner to a whole number of blocks (zero
channels). Groups of B/C run as separate launches over their channels.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from mamba_jax_kernels.selective_scan import pallas_common, pallas_gpu, pallas_tpu

BACKENDS = {"tpu": pallas_tpu, "gpu": pallas_gpu}


def default_backend():
  """The kernel variant for the platform: the GPU one on a GPU, the TPU one elsewhere."""
  return "gpu" if jax.default_backend() == "gpu" else "tpu"


def kernel_config(
  backend,
  batch,
  length,
  d_inner,
  d_state,
  *,
  has_z,
  delta_softplus,
  chunk_size=None,
  block_d=None,
  interpret=False,
  num_warps=None,
  num_stages=None,
):
  """The launch for one group of channels (d_inner here is per group), defaults filled in and
  checked against the backend's tiling rules (ValueError naming the rule)."""
  if backend not in BACKENDS:
    raise ValueError(
      f"selective_scan: pallas_backend={backend!r}; expected one of {sorted(BACKENDS)}"
    )
  common: dict[str, Any] = dict(
    has_z=has_z, delta_softplus=bool(delta_softplus), backend=backend, interpret=bool(interpret)
  )
  if backend == "tpu":
    if num_warps is not None or num_stages is not None:
      raise ValueError(
        "selective_scan: num_warps and num_stages are launch settings of the GPU "
        "(Triton) kernel; the TPU kernel takes chunk_size and block_d only"
      )
    block = block_d or pallas_tpu.default_block_d(d_inner)
    chunk = chunk_size or pallas_tpu.default_chunk(length, d_state, block)
    pallas_tpu.check_blocks(chunk, block, d_inner)
    return pallas_common.KernelConfig(chunk=chunk, block_d=block, **common)
  table = pallas_gpu.launch_settings(batch, length, d_inner, d_state)
  cfg = pallas_common.KernelConfig(
    chunk=chunk_size or table.chunk,
    block_d=block_d or table.block_d,
    num_warps=num_warps or table.num_warps,
    num_stages=num_stages or table.num_stages,
    **common,
  )
  pallas_gpu.check_blocks(cfg.chunk, cfg.block_d, cfg.num_warps, cfg.num_stages)
  return cfg


def selective_scan_pallas(
  u,
  delta,
  A,
  B,
  C,
  D=None,
  z=None,
  delta_bias=None,
  *,
  delta_softplus=False,
  initial_state=None,
  lengths=None,
  chunk_size=None,
  block_d=None,
  interpret=False,
  backend=None,
  num_warps=None,
  num_stages=None,
):
  """Same contract as `reference.selective_scan_reference`; B and C grouped
  (batch, length, groups, d_state). backend None follows the platform (`default_backend`);
  num_warps and num_stages are Triton settings of the GPU variant (None: `launch_settings`)."""
  backend = default_backend() if backend is None else backend
  batch, length, d_inner = u.shape
  groups, d_state = B.shape[2], B.shape[3]
  per_group = d_inner // groups
  cfg = kernel_config(
    backend,
    batch,
    length,
    per_group,
    d_state,
    has_z=z is not None,
    delta_softplus=delta_softplus,
    chunk_size=chunk_size,
    block_d=block_d,
    interpret=interpret,
    num_warps=num_warps,
    num_stages=num_stages,
  )
  f32 = jnp.float32
  D = jnp.zeros((d_inner,), f32) if D is None else D.astype(f32)
  bias = jnp.zeros((d_inner,), f32) if delta_bias is None else delta_bias.astype(f32)
  h0 = (
    jnp.zeros((batch, d_inner, d_state), f32)
    if initial_state is None
    else initial_state.astype(f32)
  )
  lengths = jnp.full((batch,), length, jnp.int32) if lengths is None else lengths.astype(jnp.int32)
  A = A.astype(f32)
  if backend == "gpu":  # a step's B and C load as float32 rows, with no conversion in the loop
    B, C = B.astype(f32), C.astype(f32)

  outs, states = [], []
  for g in range(groups):
    channels = slice(g * per_group, (g + 1) * per_group)
    result = _scan(
      u[..., channels],
      delta[..., channels],
      A[channels],
      B[:, :, g],
      C[:, :, g],
      D[channels],
      None if z is None else z[..., channels],
      bias[channels],
      h0[:, channels],
      lengths,
      cfg,
    )
    out, state = result  # pyright: ignore[reportGeneralTypeIssues]  (custom_vjp: untyped)
    outs.append(out)
    states.append(state)
  if groups == 1:
    return outs[0], states[0]
  return jnp.concatenate(outs, axis=-1), jnp.concatenate(states, axis=1)


def _round_up(x, multiple):
  return -(-x // multiple) * multiple


def _pad_to(x, shape):
  return jnp.pad(x, [(0, target - size) for size, target in zip(x.shape, shape)])


def _layout(cfg, u, delta, A, B, C, D, z, bias, lengths):
  """Pads the inputs into the kernel layout: B/C as (batch, L, d_state) rows (d_state padded to
  a power of two for the GPU variant)."""
  batch, length, d = u.shape
  module = BACKENDS[cfg.backend]
  L_pad, d_pad = _round_up(length, cfg.chunk), _round_up(d, cfg.block_d)
  n_pad = module.padded_state_size(A.shape[1])
  rows = lambda x: None if x is None else _pad_to(x, (batch, L_pad, d_pad))
  bc_rows = lambda x: _pad_to(x, (batch, L_pad, n_pad))
  return dict(
    u=rows(u),
    delta=rows(delta),
    B=bc_rows(B),
    C=bc_rows(C),
    At=_pad_to(A.T, (n_pad, d_pad)),
    D=_pad_to(D[None], (1, d_pad)),
    bias=_pad_to(bias[None], (1, d_pad)),
    z=rows(z),
    lengths=lengths,
  )


def _state_layout(state, n_pad, d_pad):
  """(batch, d, n) -> padded (batch, n_pad, d_pad)."""
  return _pad_to(state.transpose(0, 2, 1), (state.shape[0], n_pad, d_pad))


@functools.partial(jax.custom_vjp, nondiff_argnums=(10,))
def _scan(u, delta, A, B, C, D, z, bias, h0, lengths, cfg):
  return _scan_fwd(u, delta, A, B, C, D, z, bias, h0, lengths, cfg)[0]


def _scan_fwd(u, delta, A, B, C, D, z, bias, h0, lengths, cfg):
  batch, length, d = u.shape
  d_state = A.shape[1]
  arrays = _layout(cfg, u, delta, A, B, C, D, z, bias, lengths)
  At = arrays["At"]
  assert At is not None  # A is always laid out
  n_pad, d_pad = At.shape
  out, final_t, bounds = BACKENDS[cfg.backend].forward(
    cfg, h0t=_state_layout(h0, n_pad, d_pad), **arrays
  )
  final = final_t[:, :d_state, :d].transpose(0, 2, 1)
  return (out[:, :length, :d], final), (arrays, bounds)


def _scan_bwd(cfg, residuals, cotangents):
  arrays, bounds = residuals
  g_out, g_final = cotangents
  length, d, d_state = g_out.shape[1], g_out.shape[2], g_final.shape[2]
  batch, L_pad, d_pad = arrays["u"].shape
  n_pad = arrays["At"].shape[0]
  module = BACKENDS[cfg.backend]
  grads = module.backward(
    cfg,
    bounds=bounds,
    g_out=_pad_to(g_out, (batch, L_pad, d_pad)),
    g_final_t=_state_layout(g_final, n_pad, d_pad),
    **arrays,
  )
  rows = lambda name: grads[name][:, :length, :d]
  per_channel = lambda name: grads[name].sum(axis=(0, 1))[:d]
  dz = rows("dz") if cfg.has_z else None
  dA = grads["dAt"].sum(axis=0)[:d_state, :d].T
  B, C = arrays["B"], arrays["C"]
  bc_names = ("dBt", "dCt") if cfg.backend == "tpu" else ("dB", "dC")
  dB = module.bc_gradient(grads[bc_names[0]], length, d_state).astype(B.dtype)
  dC = module.bc_gradient(grads[bc_names[1]], length, d_state).astype(C.dtype)
  dh0 = grads["dh0t"][:, :d_state, :d].transpose(0, 2, 1)
  return (
    rows("du"),
    rows("ddelta"),
    dA,
    dB,
    dC,
    per_channel("dD"),
    dz,
    per_channel("dbias"),
    dh0,
    None,
  )


_scan.defvjp(_scan_fwd, _scan_bwd)
