"""Pallas GPU launch of the selective-scan kernels (Triton lowering).

GPU programs of one grid run concurrently, so there is no sequential grid axis to carry a state
across: each program owns (one batch element, one block of channels) and loops over the chunks
itself, the float32 state and adjoint in registers. The forward writes the state at each chunk
boundary; the backward walks chunks in reverse, recomputing one chunk's states into a
per-program workspace in global memory (L2-resident at these sizes), then running the adjoint
recurrence. Partial sums are per program and reduced outside: deterministic, no atomics.

Why Triton and not Mosaic GPU: see BUILD_NOTES.md ("GPU lowering"). Same array layout as
`pallas_tpu`, except d_state is padded to a power of two (Triton block shapes must be).
"""

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from kernels.selective_scan import pallas_common

_NUM_WARPS = 4


def default_block_d(d_inner):
  return min(64, max(16, pl.next_power_of_2(d_inner)))


def default_chunk(length):
  return 64


def padded_state_size(d_state):
  return pl.next_power_of_2(d_state)


def _common_specs(cfg, batch, length, d_state):
  bd = cfg.block_d
  rows = pl.BlockSpec((None, length, bd), lambda b, j: (b, 0, j))
  columns = pl.BlockSpec((None, d_state, length), lambda b, j: (b, 0, 0))
  channels = pl.BlockSpec((1, bd), lambda b, j: (0, j))
  specs = dict(u=rows, delta=rows, Bt=columns, Ct=columns,
               At=pl.BlockSpec((d_state, bd), lambda b, j: (0, j)), D=channels, bias=channels,
               lengths=pl.BlockSpec((batch,), lambda b, j: (0,)))
  if cfg.has_z:
    specs["z"] = rows
  return specs, rows


def _launch(cfg, kernel, grid, specs, inputs, out_specs, out_shapes, name):
  return pl.pallas_call(
      kernel, grid=grid, in_specs=[specs[key] for key in inputs], out_specs=out_specs,
      out_shape=out_shapes,
      compiler_params=pltriton.CompilerParams(num_warps=_NUM_WARPS, num_stages=1),
      interpret=cfg.interpret, name=name)(*inputs.values())


def forward(cfg, u, delta, Bt, Ct, At, D, bias, z, h0t, lengths):
  """Returns out (batch, L, d) in u.dtype, final state^T and chunk-start states^T (float32)."""
  batch, length, d = u.shape
  d_state = At.shape[0]
  n_chunks, bd = length // cfg.chunk, cfg.block_d
  specs, rows = _common_specs(cfg, batch, length, d_state)
  state = pl.BlockSpec((None, d_state, bd), lambda b, j: (b, 0, j))
  specs["h0t"] = state
  inputs = dict(u=u, delta=delta, Bt=Bt, Ct=Ct, At=At, D=D, bias=bias, lengths=lengths,
                h0t=h0t, **({"z": z} if cfg.has_z else {}))
  names = list(inputs)
  f32 = jnp.float32

  def kernel(*refs):
    refs = dict(zip(names + ["out", "h_final", "bounds"], refs))
    length_b = refs["lengths"][pl.program_id(0)]

    def chunk_body(c, h):
      refs["bounds"][c] = h
      start = c * cfg.chunk
      return pallas_common.forward_chunk(refs, h, start, start, length_b, cfg)

    refs["h_final"][...] = jax.lax.fori_loop(0, n_chunks, chunk_body, refs["h0t"][...])

  return _launch(
      cfg, kernel, (batch, d // bd), specs, inputs,
      [rows, state, pl.BlockSpec((None, n_chunks, d_state, bd), lambda b, j: (b, 0, 0, j))],
      [jax.ShapeDtypeStruct(u.shape, u.dtype), jax.ShapeDtypeStruct((batch, d_state, d), f32),
       jax.ShapeDtypeStruct((batch, n_chunks, d_state, d), f32)],
      "selective_scan_fwd")


def backward(cfg, u, delta, Bt, Ct, At, D, bias, z, lengths, bounds, g_out, g_final_t):
  """Returns du, d_delta, dz (or None), and partials dBt, dCt, dAt, dD, d_bias, then dh0^T."""
  batch, length, d = u.shape
  d_state = At.shape[0]
  T, bd = cfg.chunk, cfg.block_d
  n_chunks, n_blocks = length // T, d // bd
  specs, rows = _common_specs(cfg, batch, length, d_state)
  state = pl.BlockSpec((None, d_state, bd), lambda b, j: (b, 0, j))
  specs["bounds"] = pl.BlockSpec((None, n_chunks, d_state, bd), lambda b, j: (b, 0, 0, j))
  specs["g_out"] = rows
  specs["g_final"] = state
  inputs = dict(u=u, delta=delta, Bt=Bt, Ct=Ct, At=At, D=D, bias=bias, lengths=lengths,
                bounds=bounds, g_out=g_out, g_final=g_final_t, **({"z": z} if cfg.has_z else {}))
  names = list(inputs)
  f32 = jnp.float32
  partial_columns = pl.BlockSpec((None, None, d_state, length), lambda b, j: (b, j, 0, 0))
  per_batch_channels = pl.BlockSpec((None, 1, bd), lambda b, j: (b, 0, j))
  outputs = dict(
      du=(rows, (batch, length, d)), ddelta=(rows, (batch, length, d)),
      dBt=(partial_columns, (batch, n_blocks, d_state, length)),
      dCt=(partial_columns, (batch, n_blocks, d_state, length)),
      dAt=(state, (batch, d_state, d)), dD=(per_batch_channels, (batch, 1, d)),
      dbias=(per_batch_channels, (batch, 1, d)), dh0t=(state, (batch, d_state, d)),
      states=(pl.BlockSpec((None, None, T, d_state, bd), lambda b, j: (b, j, 0, 0, 0)),
              (batch, n_blocks, T, d_state, bd)))
  if cfg.has_z:
    outputs["dz"] = (rows, (batch, length, d))
  out_names = list(outputs)

  def kernel(*refs):
    refs = dict(zip(names + out_names, refs))
    length_b = refs["lengths"][pl.program_id(0)]

    def chunk_body(i, carry):
      c = n_chunks - 1 - i
      lam, accumulators = carry
      return pallas_common.backward_chunk(refs, refs["states"], refs["bounds"][c], lam,
                                          accumulators, c * T, c * T, length_b, cfg)

    zeros = jnp.zeros((d_state, bd), f32), jnp.zeros((1, bd), f32), jnp.zeros((1, bd), f32)
    lam, accumulators = jax.lax.fori_loop(0, n_chunks, chunk_body,
                                          (refs["g_final"][...], zeros))
    refs["dh0t"][...] = lam
    for name, value in zip(("dAt", "dD", "dbias"), accumulators):
      refs[name][...] = value

  results = _launch(cfg, kernel, (batch, n_blocks), specs, inputs,
                    [outputs[name][0] for name in out_names],
                    [jax.ShapeDtypeStruct(outputs[name][1], f32) for name in out_names],
                    "selective_scan_bwd")
  return dict(zip(out_names, results))
