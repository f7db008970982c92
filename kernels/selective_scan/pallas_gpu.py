"""Pallas GPU launch of the selective-scan kernels (Triton lowering): launch settings per shape,
the backward's workspace, and when the kernel suits a shape at all.

GPU programs of one grid run concurrently, so there is no sequential grid axis to carry a state
across: each program owns (one batch element, one block of channels) and loops over the chunks
itself, the float32 state and adjoint in registers. The forward writes the state at each chunk
boundary; the backward walks chunks in reverse, recomputing one chunk's states into a
per-program workspace in global memory (`workspace_bytes`; dC and the output's cotangent are
formed there, while the state is in registers), then running the adjoint recurrence over it,
which forms dB. Partial sums are per program and reduced outside:
deterministic, no atomics.

JAX deprecates the Triton backend of Pallas (from 0.11) in favour of Mosaic GPU; this variant
stays until a Mosaic GPU kernel can be validated on hardware (docs/design.md). `triton_status`
says whether the installed JAX still has it. Same array layout as `pallas_tpu` except B and C
arrive as float32 (converted once outside, not per step in the loop) and d_state is padded to a
power of two (Triton block shapes must be); the partial dB and dC are (time, d_state) rows.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from mamba_jax_kernels.selective_scan import pallas_gpu_kernels as kernels

try:  # the Triton backend is deprecated and will leave JAX; fail at use, not at import
  from jax.experimental.pallas import triton as pltriton
except ImportError:  # pragma: no cover - depends on the installed JAX
  pltriton = None

# Streaming multiprocessors of the GPUs the settings were chosen for (H100 and H200 SXM: 132).
SM_COUNT = 132
# `gpu_kernel_suits`: below this many programs (at the narrowest block) most SMs would idle for
# the whole sequential scan; half of an H100/H200's SMs.
MIN_PROGRAMS = SM_COUNT // 2
# ... unless the sequence is this short, when the sequential depth itself is small.
SHORT_LENGTH = 1024
BLOCK_D_CHOICES = (64, 32, 16)
DEFAULT_CHUNK = 64
# The backward's per-program workspace (outputs of the kernel, discarded by the caller): the
# chunk's states (d_state_pad, block_d) per step and the output's cotangent gy, a row per step.
WORKSPACE = ("states", "gy")
# Elements an int32 offset reaches (`check_offsets`).
MAX_ELEMENTS = 2**31 - 1


def triton_status():
  """None when the installed JAX can lower Pallas to Triton, else why not."""
  if pltriton is None or not hasattr(pltriton, "CompilerParams"):
    return (
      f"JAX {jax.__version__} has no Triton backend for Pallas (jax.experimental.pallas."
      f"triton); use implementation='xla' on this GPU"
    )
  return None


@dataclasses.dataclass(frozen=True)
class LaunchSettings:
  block_d: int
  num_warps: int
  num_stages: int
  chunk: int


def launch_settings(batch, length, d_inner, d_state):
  """The launch table: settings from occupancy arithmetic, to be confirmed by measurement
  (BUILD_NOTES.md, "What remains to be measured").

  - block_d: the widest of 64/32/16 channels that still gives two programs per SM; the scan is
    latency-bound, so co-resident programs are what hides the latency of each step.
  - num_warps: one warp per 32 channels (block_d / 32, at least 1), so each thread holds one
    channel's whole state and the forward's sums over d_state stay in its registers (more warps
    split d_state over threads: 341.5 SASS instructions per step and 8 barriers at 4 warps,
    196.5 and none at 1; BUILD_NOTES.md, "SASS per time step").
  - num_stages: 1. Triton's pipeliner makes no asynchronous copies of these loads (the SASS is
    identical at 2); the kernels prefetch the next step's inputs themselves, in the loop carry.
  - chunk: 64 steps, or the next power of two above a shorter sequence.
  """
  del d_state  # the settings no longer depend on it (one thread per channel)
  width = pl.next_power_of_2(d_inner)
  block_d = next(
    (
      b for b in BLOCK_D_CHOICES if b <= max(width, 16) and batch * -(-d_inner // b) >= 2 * SM_COUNT
    ),
    BLOCK_D_CHOICES[-1],
  )
  chunk = min(DEFAULT_CHUNK, max(8, pl.next_power_of_2(length)))
  return LaunchSettings(block_d=block_d, num_warps=max(1, block_d // 32), num_stages=1, chunk=chunk)


def gpu_kernel_suits(batch, length, d_inner):
  """Whether the Pallas GPU kernel is a sensible choice for this shape.

  Each program scans its channels sequentially over the whole length, so with fewer programs
  than MIN_PROGRAMS (batch x d_inner / 16 channels) most SMs idle for a time proportional to the
  length: e.g. 1 x 65536 x 512 gives 32 programs. Such shapes go to `xla`, whose associative
  in-chunk scan parallelises over time, unless the sequence is short (<= SHORT_LENGTH).
  """
  programs = batch * -(-d_inner // BLOCK_D_CHOICES[-1])
  return programs >= MIN_PROGRAMS or length <= SHORT_LENGTH


def workspace_bytes(batch, d_inner, d_state, chunk, block_d):
  """Global memory of the backward's workspace (`WORKSPACE`): per program, the chunk's states
  (chunk + 1, d_state_pad, block_d) float32 and the row gy (chunk, block_d) float32; batch x
  ceil(d_inner / block_d) programs: batch * round_up(d_inner, block_d) * ((chunk + 1)
  next_pow2(d_state) + chunk) * 4 bytes."""
  d_pad = -(-d_inner // block_d) * block_d
  return batch * d_pad * ((chunk + 1) * padded_state_size(d_state) + chunk) * 4


def check_blocks(chunk, block_d, num_warps, num_stages):
  """Refuses settings Triton cannot lower, with the rule that was broken."""
  if not isinstance(chunk, int) or chunk < 1:
    raise ValueError(
      f"selective_scan: pallas GPU chunk_size={chunk!r}; expected a positive integer"
    )
  if not isinstance(block_d, int) or block_d < 1 or block_d & (block_d - 1):
    raise ValueError(
      f"selective_scan: pallas GPU block_d={block_d!r}; expected a power of two "
      f"(Triton block shapes)"
    )
  if not isinstance(num_warps, int) or num_warps < 1 or num_warps & (num_warps - 1):
    raise ValueError(f"selective_scan: pallas GPU num_warps={num_warps!r}; expected a power of two")
  if not isinstance(num_stages, int) or num_stages < 1:
    raise ValueError(
      f"selective_scan: pallas GPU num_stages={num_stages!r}; expected a positive integer"
    )


def padded_state_size(d_state):
  return pl.next_power_of_2(d_state)


def _common_specs(cfg, batch, length, d_state):
  bd = cfg.block_d
  rows = pl.BlockSpec((None, length, bd), lambda b, j: (b, 0, j))
  bc_rows = pl.BlockSpec((None, length, d_state), lambda b, j: (b, 0, 0))
  channels = pl.BlockSpec((1, bd), lambda b, j: (0, j))
  specs = dict(
    u=rows,
    delta=rows,
    B=bc_rows,
    C=bc_rows,
    At=pl.BlockSpec((d_state, bd), lambda b, j: (0, j)),
    D=channels,
    bias=channels,
    lengths=pl.BlockSpec((batch,), lambda b, j: (0,)),
  )
  if cfg.has_z:
    specs["z"] = rows
  return specs, rows


def check_offsets(name, arrays):
  """Refuses arrays the kernel cannot index: Pallas's Triton lowering computes element offsets
  in int32, so an array past 2**31 - 1 elements would wrap around silently."""
  for array_name, shape in arrays.items():
    size = math.prod(shape)
    if size > MAX_ELEMENTS:
      raise ValueError(
        f"selective_scan: pallas GPU kernel {name}: {array_name} {tuple(shape)} has {size} "
        f"elements, over the 2**31 - 1 that int32 offsets reach; split the batch or the "
        f"sequence, or use implementation='xla'"
      )


def _launch(cfg, kernel, grid, specs, inputs, out_specs, out_shapes, name, out_names):
  status = triton_status()
  if status is not None and not cfg.interpret:
    raise ValueError(f"selective_scan: {status}")
  check_offsets(
    name,
    {key: value.shape for key, value in inputs.items()}
    | {key: value.shape for key, value in zip(out_names, out_shapes)},
  )
  params = (
    None
    if pltriton is None
    else pltriton.CompilerParams(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
  )
  return pl.pallas_call(
    kernel,
    grid=grid,
    in_specs=[specs[key] for key in inputs],
    out_specs=out_specs,
    out_shape=out_shapes,
    compiler_params=params,
    interpret=cfg.interpret,
    name=name,
  )(*inputs.values())


def forward(cfg, u, delta, B, C, At, D, bias, z, h0t, lengths):
  """Returns out (batch, L, d) in u.dtype, final state^T and chunk-start states^T (float32)."""
  batch, length, d = u.shape
  d_state = At.shape[0]
  n_chunks, bd = length // cfg.chunk, cfg.block_d
  specs, rows = _common_specs(cfg, batch, length, d_state)
  state = pl.BlockSpec((None, d_state, bd), lambda b, j: (b, 0, j))
  specs["h0t"] = state
  inputs = dict(
    u=u,
    delta=delta,
    B=B,
    C=C,
    At=At,
    D=D,
    bias=bias,
    lengths=lengths,
    h0t=h0t,
    **({"z": z} if cfg.has_z else {}),
  )
  names = list(inputs)
  f32 = jnp.float32

  def kernel(*refs):
    refs = dict(zip(names + ["out", "h_final", "bounds"], refs))
    hoisted = kernels.hoist(refs)

    def chunk_body(c, carry):
      h, inputs = carry
      refs["bounds"][c] = h
      return kernels.forward_chunk(refs, hoisted, h, inputs, c * cfg.chunk, cfg)

    first = kernels.prefetch(refs, 0, kernels.forward_inputs(cfg), hoisted)
    h_final, _ = jax.lax.fori_loop(0, n_chunks, chunk_body, (refs["h0t"][...], first))
    refs["h_final"][...] = h_final

  return _launch(
    cfg,
    kernel,
    (batch, d // bd),
    specs,
    inputs,
    [rows, state, pl.BlockSpec((None, n_chunks, d_state, bd), lambda b, j: (b, 0, 0, j))],
    [
      jax.ShapeDtypeStruct(u.shape, u.dtype),
      jax.ShapeDtypeStruct((batch, d_state, d), f32),
      jax.ShapeDtypeStruct((batch, n_chunks, d_state, d), f32),
    ],
    "selective_scan_fwd",
    ["out", "h_final", "bounds"],
  )


def _barrier(cfg):
  """A CTA barrier on the GPU; interpret mode runs a program's threads as one, so none there."""
  if cfg.interpret or pltriton is None:
    return lambda: None
  return pltriton.debug_barrier


def backward(cfg, u, delta, B, C, At, D, bias, z, lengths, bounds, g_out, g_final_t):
  """Returns du, d_delta, dz (input dtypes; dz only with z), partials dB, dC
  (batch, n_blocks, L, d_state), dAt, dD, d_bias, dh0^T, and the workspace (`WORKSPACE`)."""
  batch, length, d = u.shape
  d_state = At.shape[0]
  T, bd = cfg.chunk, cfg.block_d
  n_chunks, n_blocks = length // T, d // bd
  specs, rows = _common_specs(cfg, batch, length, d_state)
  state = pl.BlockSpec((None, d_state, bd), lambda b, j: (b, 0, j))
  specs["bounds"] = pl.BlockSpec((None, n_chunks, d_state, bd), lambda b, j: (b, 0, 0, j))
  specs["g_out"] = rows
  specs["g_final"] = state
  inputs = dict(
    u=u,
    delta=delta,
    B=B,
    C=C,
    At=At,
    D=D,
    bias=bias,
    lengths=lengths,
    bounds=bounds,
    g_out=g_out,
    g_final=g_final_t,
    **({"z": z} if cfg.has_z else {}),
  )
  names = list(inputs)
  f32 = jnp.float32
  partial_rows = pl.BlockSpec((None, None, length, d_state), lambda b, j: (b, j, 0, 0))
  per_batch_channels = pl.BlockSpec((None, 1, bd), lambda b, j: (b, 0, j))
  workspace_rows = pl.BlockSpec((None, None, T, bd), lambda b, j: (b, j, 0, 0))
  outputs = dict(
    du=(rows, (batch, length, d), u.dtype),
    ddelta=(rows, (batch, length, d), delta.dtype),
    dB=(partial_rows, (batch, n_blocks, length, d_state), f32),
    dC=(partial_rows, (batch, n_blocks, length, d_state), f32),
    dAt=(state, (batch, d_state, d), f32),
    dD=(per_batch_channels, (batch, 1, d), f32),
    dbias=(per_batch_channels, (batch, 1, d), f32),
    dh0t=(state, (batch, d_state, d), f32),
    states=(
      pl.BlockSpec((None, None, T + 1, d_state, bd), lambda b, j: (b, j, 0, 0, 0)),
      (batch, n_blocks, T + 1, d_state, bd),
      f32,
    ),
    gy=(workspace_rows, (batch, n_blocks, T, bd), f32),
  )
  if cfg.has_z:
    outputs["dz"] = (rows, (batch, length, d), z.dtype)
  out_names = list(outputs)

  barrier = _barrier(cfg)

  def kernel(*refs):
    refs = dict(zip(names + out_names, refs))
    hoisted = kernels.hoist(refs)

    def chunk_body(i, carry):
      c = n_chunks - 1 - i
      return kernels.backward_chunk(
        refs,
        hoisted,
        {name: refs[name] for name in WORKSPACE},
        kernels.load_tile(refs["bounds"], hoisted.tile, c),
        carry,
        c * T,
        barrier,
        cfg,
      )

    zeros = jnp.zeros((d_state, bd), f32), jnp.zeros((1, bd), f32), jnp.zeros((1, bd), f32)
    last = kernels.prefetch(refs, length - 1, kernels.REVERSE_INPUTS, hoisted)
    lam, accumulators, _ = jax.lax.fori_loop(
      0, n_chunks, chunk_body, (kernels.load_tile(refs["g_final"], hoisted.tile), zeros, last)
    )
    kernels.store_tile(refs["dh0t"], hoisted.tile, lam)
    dA, dD, dbias = accumulators
    kernels.store_tile(refs["dAt"], hoisted.tile, dA)
    refs["dD"][...] = dD
    refs["dbias"][...] = dbias

  results = _launch(
    cfg,
    kernel,
    (batch, n_blocks),
    specs,
    inputs,
    [outputs[name][0] for name in out_names],
    [jax.ShapeDtypeStruct(shape, dtype) for _, shape, dtype in outputs.values()],
    "selective_scan_bwd",
    out_names,
  )
  return dict(zip(out_names, results))


def bc_gradient(partial_rows, length, d_state):
  """(batch, n_blocks, L_pad, d_state_pad) float32 partials -> (batch, length, d_state)."""
  return partial_rows.sum(axis=1)[:, :length, :d_state]
