"""Pallas TPU (Mosaic) launch of the selective-scan kernels: block sizes, their validation, the
VMEM budget and the grid.

Grid (batch, d_inner / block_d, length / chunk): the chunk axis is sequential ("arbitrary") and
the float32 state (forward) or adjoint (backward) is carried across it in VMEM scratch. The
backward visits chunks in reverse through its index maps. Partial sums (dA, dD, d_bias per batch
element; dB, dC per channel block and chunk) are written per program and reduced outside:
deterministic, no atomics. Lengths live in SMEM, one scalar per batch element.

Arrays arrive padded and laid out by `pallas_op`: rows (batch, length, d), B and C as rows
(batch, length, d_state), A^T (d_state, d), D and bias (1, d), states (batch, ..., d_state, d).
Block shapes follow the (8, 128) tiling of TPU vector memory: the last block dimension is a
multiple of 128 lanes or the whole array dimension, the one before it a multiple of 8 sublanes
or the whole dimension.
"""

import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from mamba_jax_kernels.selective_scan import pallas_tpu_kernels as kernels

_SEMANTICS = ("parallel", "parallel", "arbitrary")
LANES, SUBLANES = 128, 8
MAX_BLOCK_D = 512
MAX_CHUNK = 128  # the time loop is unrolled: longer chunks only grow the program
# Default chunk: the largest power of two (<= 64) whose (chunk, d_state, block_d) float32
# scratch fits this budget; the kernel keeps two of them (forward) or two plus rows (backward).
_STATE_SCRATCH_BUDGET = 2 * 2**20
# VMEM requested from Mosaic: what the blocks and scratch need, with headroom for Mosaic's own
# scratch, never below the default scoped limit of recent chips nor above the 64 MiB a v7x
# TensorCore has.
_VMEM_FLOOR, _VMEM_CEILING = 32 * 2**20, 64 * 2**20


def _round_up(x, multiple):
  return -(-x // multiple) * multiple


def default_block_d(d_inner):
  """Whole width up to 128 channels; else the widest of 512/256/128 that adds no padding beyond
  a multiple of 128 (d_inner 1536 -> 512, 640 -> 128)."""
  if d_inner <= LANES:
    return d_inner
  return next(
    b for b in (MAX_BLOCK_D, 256, LANES) if _round_up(d_inner, b) == _round_up(d_inner, LANES)
  )


def default_chunk(length, d_state, block_d):
  limit = max(SUBLANES, _round_up(length, SUBLANES))
  for chunk in (64, 32, 16, SUBLANES):
    if chunk <= limit and chunk * _round_up(d_state, SUBLANES) * block_d * 4 <= (
      _STATE_SCRATCH_BUDGET
    ):
      return chunk
  return SUBLANES


def check_blocks(chunk, block_d, d_inner):
  """Refuses block sizes Mosaic cannot tile, with the rule that was broken."""
  if not isinstance(chunk, int) or chunk % SUBLANES or not 0 < chunk <= MAX_CHUNK:
    raise ValueError(
      f"selective_scan: pallas TPU chunk_size={chunk!r}; expected a multiple of "
      f"{SUBLANES} (TPU sublane tiling) between {SUBLANES} and {MAX_CHUNK} (the "
      f"time loop is unrolled)"
    )
  if (
    not isinstance(block_d, int)
    or block_d < 1
    or block_d > MAX_BLOCK_D
    or (block_d % LANES and block_d != d_inner)
  ):
    raise ValueError(
      f"selective_scan: pallas TPU block_d={block_d!r}; expected a multiple of "
      f"{LANES} (TPU lane tiling) up to {MAX_BLOCK_D}, or the whole d_inner per "
      f"group ({d_inner})"
    )


def padded_state_size(d_state):
  return d_state


def _tile_bytes(shape, dtype):
  """Bytes a block occupies in VMEM: last dim padded to lanes, the one before to sublanes."""
  *major, second, last = (1,) * max(0, 2 - len(shape)) + tuple(shape)
  return (
    math.prod(major)
    * _round_up(second, SUBLANES)
    * _round_up(last, LANES)
    * max(jnp.dtype(dtype).itemsize, 4)
  )


def vmem_limit_bytes(blocks, scratch):
  """VMEM for double-buffered blocks plus scratch, given as [(shape, dtype)]; raises when even
  the ceiling is too small for the block sizes."""
  need = 2 * sum(_tile_bytes(*b) for b in blocks) + sum(_tile_bytes(*b) for b in scratch)
  if need > _VMEM_CEILING * 3 // 4:
    raise ValueError(
      f"selective_scan: pallas TPU blocks need {need / 2**20:.1f} MiB of VMEM; "
      f"use a smaller chunk_size or block_d"
    )
  return int(min(_VMEM_CEILING, max(_VMEM_FLOOR, need * 5 // 4 + 4 * 2**20)))


def _scratch(cfg, d_state, names_and_kinds):
  T, bd = cfg.chunk, cfg.block_d
  shapes = {
    "row": (T, bd),
    "broadcast_row": (bd // LANES, T, LANES) if kernels.split_rows(bd) else (T, bd),
    "state": (T, d_state, bd),
    "carry": (d_state, bd),
  }
  return {name: (shapes[kind], jnp.float32) for name, kind in names_and_kinds}


def _partial_sums(cfg, d_state, names):
  """Scratch for the sums over d_state the kernels defer (`kernels.deferred_sums`): 8 partial
  sums per step and channel, (block_d / 128, chunk * 8, 128) float32 each."""
  if not kernels.deferred_sums(d_state, cfg.block_d):
    return {}
  shape = (cfg.block_d // LANES, cfg.chunk * SUBLANES, LANES)
  return {name: (shape, jnp.float32) for name in names}


def _specs(cfg, n_chunks, d_state, reverse):
  """BlockSpecs of the inputs both kernels read, keyed by name."""
  T, bd = cfg.chunk, cfg.block_d
  chunk_of = (lambda c: n_chunks - 1 - c) if reverse else (lambda c: c)
  rows = pl.BlockSpec((None, T, bd), lambda b, j, c: (b, chunk_of(c), j))
  bc_tiles = pl.BlockSpec((None, None, d_state, T), lambda b, j, c: (b, chunk_of(c), 0, 0))
  channels = pl.BlockSpec((1, bd), lambda b, j, c: (0, j))
  state = pl.BlockSpec((None, d_state, bd), lambda b, j, c: (b, 0, j))
  specs = dict(
    u=rows,
    delta=rows,
    B=bc_tiles,
    C=bc_tiles,
    At=pl.BlockSpec((d_state, bd), lambda b, j, c: (0, j)),
    D=channels,
    bias=channels,
    lengths=pl.BlockSpec(memory_space=pltpu.SMEM),
    z=rows,
    g_out=rows,
    h0t=state,
    g_final=state,
    bounds=pl.BlockSpec((None, None, d_state, bd), lambda b, j, c: (b, chunk_of(c), 0, j)),
    bc_grads=pl.BlockSpec(
      (None, None, None, d_state, T), lambda b, j, c: (b, j, chunk_of(c), 0, 0)
    ),
    per_batch_channels=pl.BlockSpec((None, 1, bd), lambda b, j, c: (b, 0, j)),
  )
  return specs


def _block_of(spec, dtype):
  """(block shape without squeezed dimensions, dtype) of a BlockSpec."""
  return tuple(s for s in spec.block_shape if s is not None), dtype


def _call(cfg, kernel, grid, specs, inputs, outputs, scratch, name):
  """pallas_call with inputs {name: array} and outputs {name: (spec, shape, dtype)}."""
  in_blocks = [_block_of(specs[k], v.dtype) for k, v in inputs.items() if k != "lengths"]
  out_blocks = [_block_of(spec, dtype) for spec, _, dtype in outputs.values()]
  params = pltpu.CompilerParams(
    dimension_semantics=_SEMANTICS,
    vmem_limit_bytes=vmem_limit_bytes(in_blocks + out_blocks, list(scratch.values())),
  )
  return pl.pallas_call(
    kernel,
    grid=grid,
    in_specs=[specs[k] for k in inputs],
    out_specs=[spec for spec, _, _ in outputs.values()],
    out_shape=[jax.ShapeDtypeStruct(shape, dtype) for _, shape, dtype in outputs.values()],
    scratch_shapes=[pltpu.VMEM(shape, dtype) for shape, dtype in scratch.values()],
    compiler_params=params,
    interpret=cfg.interpret,
    name=name,
  )(*inputs.values())


def chunk_tiles(x, chunk):
  """(batch, L, d_state) rows -> (batch, L / chunk, d_state, chunk) float32: each chunk's B^T
  (or C^T), so that a step's B_t is a column of a tile, no relayout in the kernel. B and C are
  small: the transpose and the cast are XLA's, outside the kernel (exact for bf16; a float32
  column is broadcast over lanes without the bf16 packing and unpacking Mosaic adds)."""
  batch, length, n = x.shape
  x = x.astype(jnp.float32)
  return x.reshape(batch, length // chunk, chunk, n).transpose(0, 1, 3, 2)


def forward(cfg, u, delta, B, C, At, D, bias, z, h0t, lengths):
  """Returns out (batch, L, d) in u.dtype, final state^T and chunk-start states^T (float32)."""
  batch, length, d = u.shape
  d_state = At.shape[0]
  n_chunks, n_blocks = length // cfg.chunk, d // cfg.block_d
  specs = _specs(cfg, n_chunks, d_state, reverse=False)
  inputs = dict(
    u=u,
    delta=delta,
    B=chunk_tiles(B, cfg.chunk),
    C=chunk_tiles(C, cfg.chunk),
    At=At,
    D=D,
    bias=bias,
    lengths=lengths,
    h0t=h0t,
    **({"z": z} if cfg.has_z else {}),
  )
  f32 = jnp.float32
  outputs = dict(
    out=(specs["u"], u.shape, u.dtype),
    h_final=(specs["h0t"], (batch, d_state, d), f32),
    bounds=(specs["bounds"], (batch, n_chunks, d_state, d), f32),
  )
  scratch = _scratch(
    cfg,
    d_state,
    [("h", "carry")]
    + [(n, "broadcast_row") for n in kernels.BROADCAST_ROW_SCRATCH]
    + [(n, "row") for n in kernels.ROW_SCRATCH],
  )
  scratch |= _partial_sums(cfg, d_state, ("p",))
  names = list(inputs) + list(outputs) + list(scratch)

  def kernel(*refs):
    refs = dict(zip(names, refs))
    b, c = pl.program_id(0), pl.program_id(2)

    @pl.when(c == 0)
    def _():
      refs["h"][...] = refs["h0t"][...]

    h = refs["h"][...]
    refs["bounds"][...] = h
    h = kernels.forward_chunk(refs, refs, h, c * cfg.chunk, refs["lengths"][b], cfg)
    refs["h"][...] = h

    @pl.when(c == n_chunks - 1)
    def _():
      refs["h_final"][...] = h

  return _call(
    cfg, kernel, (batch, n_blocks, n_chunks), specs, inputs, outputs, scratch, "selective_scan_fwd"
  )


def backward(cfg, u, delta, B, C, At, D, bias, z, lengths, bounds, g_out, g_final_t):
  """Returns du, d_delta (input dtypes), dz (or absent), dB^T and dC^T tiles
  (batch, n_blocks, n_chunks, d_state, chunk), partials dAt, dD, d_bias, then dh0^T."""
  batch, length, d = u.shape
  d_state = At.shape[0]
  T = cfg.chunk
  n_chunks, n_blocks = length // T, d // cfg.block_d
  specs = _specs(cfg, n_chunks, d_state, reverse=True)
  chunk_of = lambda c: n_chunks - 1 - c
  inputs = dict(
    u=u,
    delta=delta,
    B=chunk_tiles(B, cfg.chunk),
    C=chunk_tiles(C, cfg.chunk),
    At=At,
    D=D,
    bias=bias,
    lengths=lengths,
    bounds=bounds,
    g_out=g_out,
    g_final=g_final_t,
    **({"z": z} if cfg.has_z else {}),
  )
  f32 = jnp.float32
  tiles = (batch, n_blocks, n_chunks, d_state, T)
  outputs = dict(
    du=(specs["u"], u.shape, u.dtype),
    ddelta=(specs["u"], u.shape, delta.dtype),
    dBt=(specs["bc_grads"], tiles, f32),
    dCt=(specs["bc_grads"], tiles, f32),
    dAt=(specs["h0t"], (batch, d_state, d), f32),
    dD=(specs["per_batch_channels"], (batch, 1, d), f32),
    dbias=(specs["per_batch_channels"], (batch, 1, d), f32),
    dh0t=(specs["h0t"], (batch, d_state, d), f32),
  )
  if cfg.has_z:
    outputs["dz"] = (specs["u"], u.shape, z.dtype)
  row_names = kernels.ROW_SCRATCH + kernels.BACKWARD_ROW_SCRATCH
  broadcast_names = kernels.BROADCAST_ROW_SCRATCH + kernels.BACKWARD_BROADCAST_ROW_SCRATCH
  scratch = _scratch(
    cfg,
    d_state,
    [("lam", "carry")]
    + [(n, "broadcast_row") for n in broadcast_names]
    + [(n, "row") for n in row_names]
    + [(n, "state") for n in kernels.STATE_SCRATCH],
  ) | _partial_sums(cfg, d_state, ("p", "p2"))
  names = list(inputs) + list(outputs) + list(scratch)
  partials = ("dAt", "dD", "dbias")

  def kernel(*refs):
    refs = dict(zip(names, refs))
    b, c = pl.program_id(0), pl.program_id(2)

    @pl.when(c == 0)
    def _():
      refs["lam"][...] = refs["g_final"][...]
      for name in partials:
        refs[name][...] = jnp.zeros_like(refs[name])

    lam, *sums = kernels.backward_chunk(
      refs, refs, refs["bounds"][...], refs["lam"][...], chunk_of(c) * T, refs["lengths"][b], cfg
    )
    refs["lam"][...] = lam
    for name, value in zip(partials, sums):
      refs[name][...] += value

    @pl.when(c == n_chunks - 1)
    def _():
      refs["dh0t"][...] = lam

  results = _call(
    cfg, kernel, (batch, n_blocks, n_chunks), specs, inputs, outputs, scratch, "selective_scan_bwd"
  )
  return dict(zip(outputs, results))


def bc_gradient(tiles, length, d_state):
  """(batch, n_blocks, n_chunks, d_state, chunk) float32 partials -> (batch, length, d_state)."""
  batch, _, n_chunks, n, T = tiles.shape
  summed = tiles.sum(axis=1).transpose(0, 1, 3, 2).reshape(batch, n_chunks * T, n)
  return summed[:, :length, :d_state]
