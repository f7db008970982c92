"""Pallas TPU (Mosaic) launch of the selective-scan kernels.

Grid (batch, d_inner / block_d, length / chunk): the chunk axis is sequential ("arbitrary") and
the float32 state (forward) or adjoint (backward) is carried across it in VMEM scratch. The
backward visits chunks in reverse through its index maps. Partial sums (dA, dD, d_bias per batch
element; dB, dC per channel block) are written per program and reduced outside: deterministic,
no atomics. Lengths live in SMEM, one scalar per batch element.

Arrays arrive padded and laid out by `pallas_op`: rows (batch, length, d), B^T and C^T
(batch, d_state, length), A^T (d_state, d), D and bias (1, d), states (batch, ..., d_state, d).
"""

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from kernels.selective_scan import pallas_common

_SEMANTICS = ("parallel", "parallel", "arbitrary")
_LANES = 128  # TPU vector lanes: the channel block and the B^T/C^T time block fill them


def default_block_d(d_inner):
  """A full lane row of channels; narrower layers use their whole width (a legal full block)."""
  return d_inner if d_inner <= _LANES else _LANES


def default_chunk(length):
  """Time steps per grid step. B^T/C^T blocks put time on lanes: 128, or the whole sequence."""
  return length if length <= _LANES else _LANES


def padded_state_size(d_state):
  return d_state


def _common_specs(cfg, n_chunks, d_state, reverse):
  """BlockSpecs of the inputs both kernels read, keyed by name."""
  T, bd = cfg.chunk, cfg.block_d
  chunk_of = (lambda c: n_chunks - 1 - c) if reverse else (lambda c: c)
  rows = pl.BlockSpec((None, T, bd), lambda b, j, c: (b, chunk_of(c), j))
  columns = pl.BlockSpec((None, d_state, T), lambda b, j, c: (b, 0, chunk_of(c)))
  channels = pl.BlockSpec((1, bd), lambda b, j, c: (0, j))
  specs = dict(u=rows, delta=rows, Bt=columns, Ct=columns,
               At=pl.BlockSpec((d_state, bd), lambda b, j, c: (0, j)), D=channels, bias=channels,
               lengths=pl.BlockSpec(memory_space=pltpu.SMEM))
  if cfg.has_z:
    specs["z"] = rows
  return specs, rows, chunk_of


def forward(cfg, u, delta, Bt, Ct, At, D, bias, z, h0t, lengths):
  """Returns out (batch, L, d) in u.dtype, final state^T and chunk-start states^T (float32)."""
  batch, length, d = u.shape
  d_state = At.shape[0]
  n_chunks, n_blocks = length // cfg.chunk, d // cfg.block_d
  specs, rows, _ = _common_specs(cfg, n_chunks, d_state, reverse=False)
  state = pl.BlockSpec((None, d_state, cfg.block_d), lambda b, j, c: (b, 0, j))
  inputs = dict(u=u, delta=delta, Bt=Bt, Ct=Ct, At=At, D=D, bias=bias, lengths=lengths,
                h0t=h0t, **({"z": z} if cfg.has_z else {}))
  specs["h0t"] = state
  names = list(inputs)
  f32 = jnp.float32

  def kernel(*refs):
    refs = dict(zip(names + ["out", "h_final", "bounds", "h"], refs))
    b, c = pl.program_id(0), pl.program_id(2)

    @pl.when(c == 0)
    def _():
      refs["h"][...] = refs["h0t"][...]

    refs["bounds"][...] = refs["h"][...]
    h = pallas_common.forward_chunk(refs, refs["h"][...], 0, c * cfg.chunk, refs["lengths"][b], cfg)
    refs["h"][...] = h

    @pl.when(c == n_chunks - 1)
    def _():
      refs["h_final"][...] = h

  return pl.pallas_call(
      kernel,
      grid=(batch, n_blocks, n_chunks),
      in_specs=[specs[name] for name in names],
      out_specs=[rows, state,
                 pl.BlockSpec((None, None, d_state, cfg.block_d), lambda b, j, c: (b, c, 0, j))],
      out_shape=[jax.ShapeDtypeStruct(u.shape, u.dtype),
                 jax.ShapeDtypeStruct((batch, d_state, d), f32),
                 jax.ShapeDtypeStruct((batch, n_chunks, d_state, d), f32)],
      scratch_shapes=[pltpu.VMEM((d_state, cfg.block_d), f32)],
      compiler_params=pltpu.CompilerParams(dimension_semantics=_SEMANTICS),
      interpret=cfg.interpret,
      name="selective_scan_fwd",
  )(*inputs.values())


def backward(cfg, u, delta, Bt, Ct, At, D, bias, z, lengths, bounds, g_out, g_final_t):
  """Returns du, d_delta, dz (or None), and partials dBt, dCt, dAt, dD, d_bias, then dh0^T."""
  batch, length, d = u.shape
  d_state = At.shape[0]
  T, bd = cfg.chunk, cfg.block_d
  n_chunks, n_blocks = length // T, d // bd
  specs, rows, chunk_of = _common_specs(cfg, n_chunks, d_state, reverse=True)
  state = pl.BlockSpec((None, d_state, bd), lambda b, j, c: (b, 0, j))
  specs["bounds"] = pl.BlockSpec((None, None, d_state, bd), lambda b, j, c: (b, chunk_of(c), 0, j))
  specs["g_out"] = rows
  specs["g_final"] = state
  inputs = dict(u=u, delta=delta, Bt=Bt, Ct=Ct, At=At, D=D, bias=bias, lengths=lengths,
                bounds=bounds, g_out=g_out, g_final=g_final_t, **({"z": z} if cfg.has_z else {}))
  names = list(inputs)
  f32 = jnp.float32
  partial_columns = pl.BlockSpec((None, None, d_state, T), lambda b, j, c: (b, j, 0, chunk_of(c)))
  per_batch_channels = pl.BlockSpec((None, 1, bd), lambda b, j, c: (b, 0, j))
  outputs = dict(
      du=(rows, (batch, length, d)), ddelta=(rows, (batch, length, d)),
      dBt=(partial_columns, (batch, n_blocks, d_state, length)),
      dCt=(partial_columns, (batch, n_blocks, d_state, length)),
      dAt=(state, (batch, d_state, d)), dD=(per_batch_channels, (batch, 1, d)),
      dbias=(per_batch_channels, (batch, 1, d)), dh0t=(state, (batch, d_state, d)))
  if cfg.has_z:
    outputs["dz"] = (rows, (batch, length, d))
  out_names = list(outputs)

  def kernel(*refs):
    refs = dict(zip(names + out_names + ["lam", "states"], refs))
    b, c = pl.program_id(0), pl.program_id(2)

    @pl.when(c == 0)
    def _():
      refs["lam"][...] = refs["g_final"][...]
      for name in ("dAt", "dD", "dbias"):
        refs[name][...] = jnp.zeros_like(refs[name])

    accumulators = tuple(refs[name][...] for name in ("dAt", "dD", "dbias"))
    lam, accumulators = pallas_common.backward_chunk(
        refs, refs["states"], refs["bounds"][...], refs["lam"][...], accumulators, 0,
        chunk_of(c) * T, refs["lengths"][b], cfg)
    refs["lam"][...] = lam
    for name, value in zip(("dAt", "dD", "dbias"), accumulators):
      refs[name][...] = value

    @pl.when(c == n_chunks - 1)
    def _():
      refs["dh0t"][...] = lam

  results = pl.pallas_call(
      kernel,
      grid=(batch, n_blocks, n_chunks),
      in_specs=[specs[name] for name in names],
      out_specs=[outputs[name][0] for name in out_names],
      out_shape=[jax.ShapeDtypeStruct(outputs[name][1], f32) for name in out_names],
      scratch_shapes=[pltpu.VMEM((d_state, bd), f32), pltpu.VMEM((T, d_state, bd), f32)],
      compiler_params=pltpu.CompilerParams(dimension_semantics=_SEMANTICS),
      interpret=cfg.interpret,
      name="selective_scan_bwd",
  )(*inputs.values())
  return dict(zip(out_names, results))
