"""Kernel bodies of the Pallas TPU (Mosaic) selective scan: one chunk of one (batch element,
channel block) per grid step.

Layout inside a grid step: the state is (d_state, block_d) float32, channels on lanes; u, delta,
z, the outputs and their cotangents are (chunk, block_d) rows; B and C are (chunk, d_state)
rows, the layout they have in HBM. Each chunk goes through the same phases:

1. stage: the chunk's inputs are read once, cast to float32 and the step size (bias, softplus,
   length mask) computed for the whole chunk at once, into VMEM scratch;
2. discretise: exp(dt A) and dt u B for every step of the chunk, into (chunk, d_state, block_d)
   scratch; none of this waits on the state, so it pipelines freely;
3. recur: h_t = a_t h_{t-1} + x_t, the only dependent chain, two vector ops per step;
4. outputs from the stored states (y_t = <C_t, h_t>), then the D skip, gate and mask for the
   whole chunk, cast and stored once.

Every time loop of the compiled kernel is a Python loop: unrolled, with static indices, so no
index is dynamic on any axis and Mosaic sees straight-line code to schedule (`for_each_step`;
interpret mode runs the same step bodies in a rolled loop). A step's B_t (or C_t) is the row B[t] of
the staged float32 scratch, reshaped to a (d_state, 1) column (the pattern of axlearn's Mamba
kernel). Gradients of B and C come out as (d_state, chunk) tiles assembled in registers with a
select per step and stored once per chunk.
"""

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from kernels.selective_scan import pallas_common

F32 = jnp.float32
ROW_SCRATCH = ("dt", "dtu", "y")  # (chunk, block_d) float32
BACKWARD_ROW_SCRATCH = ("gy", "lam_b", "ddt")  # (chunk, block_d) float32, backward only
COLUMN_SCRATCH = ("b", "c")  # (chunk, d_state) float32
STATE_SCRATCH = ("decay", "states")  # (chunk, d_state, block_d) float32


def _row(ref, t):
  return ref[pl.ds(t, 1), :]


def for_each_step(cfg, body, carry, reverse=False):
  """carry = body(t, carry) for t over the chunk. Unrolled (a Python loop, static t) for the
  compiled kernel; a rolled `fori_loop` (traced t, same body) in interpret mode, where the
  unrolled program costs XLA tens of seconds to compile even at test sizes."""
  T = cfg.chunk
  if cfg.unrolled:
    for t in reversed(range(T)) if reverse else range(T):
      carry = body(t, carry)
    return carry
  step = (lambda i, c: body(T - 1 - i, c)) if reverse else body
  return jax.lax.fori_loop(0, T, step, carry)


def _previous_state(s, t, h_start):
  """h_{t-1} inside the chunk: the stored state before t, or the chunk's start state."""
  if isinstance(t, int):
    return s["states"][t - 1] if t > 0 else h_start
  return jnp.where(t > 0, s["states"][jnp.maximum(t - 1, 0)], h_start)


def _column(ref, t):
  """Row t of a (chunk, d_state) float32 scratch as a (d_state, 1) column."""
  return jnp.expand_dims(ref[t], axis=-1)


def stage(refs, s, t0, length, cfg):
  """Phase 1. Returns u, delta + bias and the validity mask, (chunk, block_d) each."""
  T, bd = refs["u"].shape
  u = refs["u"][...].astype(F32)
  raw = refs["delta"][...].astype(F32) + refs["bias"][...]
  valid = t0 + jax.lax.broadcasted_iota(jnp.int32, (T, bd), 0) < length
  dt = pallas_common.step_size(raw, valid, cfg)
  s["dt"][...] = dt
  s["dtu"][...] = dt * u
  s["b"][...] = refs["B"][...].astype(F32)
  s["c"][...] = refs["C"][...].astype(F32)
  return u, raw, valid


def recompute_states(refs, s, h, cfg):
  """Phases 2 and 3: fills s["decay"][t] = exp(dt_t A) and s["states"][t] = h_t; returns h_T."""
  A = refs["At"][...]

  def discretise(t, carry):
    s["decay"][t] = jnp.exp(_row(s["dt"], t) * A)
    s["states"][t] = _row(s["dtu"], t) * _column(s["b"], t)
    return carry

  def recur(t, h):
    h = s["decay"][t] * h + s["states"][t]
    s["states"][t] = h
    return h

  for_each_step(cfg, discretise, 0)
  return for_each_step(cfg, recur, h)


def outputs_before_gate(refs, s, u, cfg):
  """Phase 4: y0 = <C_t, h_t> + D u_t for the chunk, (chunk, block_d)."""

  def output(t, carry):
    s["y"][pl.ds(t, 1), :] = jnp.sum(_column(s["c"], t) * s["states"][t], axis=0, keepdims=True)
    return carry

  for_each_step(cfg, output, 0)
  return s["y"][...] + refs["D"][...] * u


def forward_chunk(refs, s, h, t0, length, cfg):
  """Runs one chunk from state h, stores its outputs; returns the state after the chunk."""
  u, _, valid = stage(refs, s, t0, length, cfg)
  h = recompute_states(refs, s, h, cfg)
  y = outputs_before_gate(refs, s, u, cfg)
  if cfg.has_z:
    y = y * jax.nn.silu(refs["z"][...].astype(F32))
  refs["out"][...] = jnp.where(valid, y, 0.0).astype(refs["out"].dtype)
  return h


def backward_chunk(refs, s, h_start, lam, t0, length, cfg):
  """Reverse pass over one chunk.

  Recomputes the chunk's states from its start state, then runs the adjoint recurrence
  lambda_t = gy_t C_t + a_{t+1} lambda_{t+1} backwards. `lam` enters as a_{t+1} lambda_{t+1}
  from the chunk after this one and leaves as a_0 lambda_0 of this chunk. Stores du, d_delta,
  dz and this chunk's dB^T, dC^T tiles; returns (lam, dA^T, dD, d_bias) of this chunk.
  """
  T = cfg.chunk
  u, raw, valid = stage(refs, s, t0, length, cfg)
  recompute_states(refs, s, h_start, cfg)
  g = refs["g_out"][...].astype(F32)
  if cfg.has_z:
    y0 = outputs_before_gate(refs, s, u, cfg)
    g, dz = pallas_common.gate_and_grad(refs["z"][...].astype(F32), y0, g)
    refs["dz"][...] = jnp.where(valid, dz, 0.0).astype(refs["dz"].dtype)
  gy = jnp.where(valid, g, 0.0)
  s["gy"][...] = gy

  A = refs["At"][...]
  d_state = A.shape[0]
  lanes = jax.lax.broadcasted_iota(jnp.int32, (d_state, T), 1)

  def adjoint(t, carry):
    lam, dA, dBt, dCt = carry
    gy_t, a_t, h_t = _row(s["gy"], t), s["decay"][t], s["states"][t]
    lam = lam + _column(s["c"], t) * gy_t
    dCt = jnp.where(lanes == t, jnp.sum(h_t * gy_t, axis=1, keepdims=True), dCt)
    decay_grad = lam * _previous_state(s, t, h_start) * a_t
    dA = dA + decay_grad * _row(s["dt"], t)
    s["ddt"][pl.ds(t, 1), :] = jnp.sum(decay_grad * A, axis=0, keepdims=True)
    s["lam_b"][pl.ds(t, 1), :] = jnp.sum(lam * _column(s["b"], t), axis=0, keepdims=True)
    dBt = jnp.where(lanes == t, jnp.sum(lam * _row(s["dtu"], t), axis=1, keepdims=True), dBt)
    return lam * a_t, dA, dBt, dCt

  zeros = jnp.zeros((d_state, T), F32)
  lam, dA, dBt, dCt = for_each_step(
    cfg, adjoint, (lam, jnp.zeros_like(A), zeros, zeros), reverse=True
  )
  lam_b = s["lam_b"][...]
  refs["du"][...] = (gy * refs["D"][...] + lam_b * s["dt"][...]).astype(refs["du"].dtype)
  d_raw = (s["ddt"][...] + lam_b * u) * pallas_common.step_size_grad(raw, cfg)
  d_raw = jnp.where(valid, d_raw, 0.0)
  refs["ddelta"][...] = d_raw.astype(refs["ddelta"].dtype)
  refs["dBt"][...] = dBt
  refs["dCt"][...] = dCt
  dD = jnp.sum(gy * u, axis=0, keepdims=True)
  d_bias = jnp.sum(d_raw, axis=0, keepdims=True)
  return lam, dA, dD, d_bias
