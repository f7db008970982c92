"""Kernel bodies of the Pallas GPU (Triton) selective scan: one program steps through the whole
sequence of one (batch element, channel block).

Layout inside a program: the state is (d_state, block_d) float32 with channels on the fast
axis; u, delta, z and the outputs are (time, block_d) rows; B and C arrive transposed as
(d_state, time), so step t reads a column (on a GPU a column is a strided load, nothing more).
Refs span the whole padded length; `offset` is where the chunk starts in them.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from kernels.selective_scan import pallas_common


@dataclasses.dataclass
class StepInputs:
  """Per-step float32 values that the forward and backward recurrences both need."""

  u: jax.Array  # (1, block_d)
  raw: jax.Array  # (1, block_d) delta + bias, before softplus
  dt: jax.Array  # (1, block_d) step size, 0 where masked
  valid: jax.Array  # () bool
  b: jax.Array  # (d_state, 1)
  c: jax.Array  # (d_state, 1)
  decay: jax.Array  # (d_state, block_d) exp(dt A)


def load_step(refs, index, length, cfg):
  f32 = jnp.float32
  row = pl.ds(index, 1)
  u = refs["u"][row, :].astype(f32)
  raw = refs["delta"][row, :].astype(f32) + refs["bias"][...]
  valid = index < length
  dt = pallas_common.step_size(raw, valid, cfg)
  b = refs["Bt"][:, row].astype(f32)
  c = refs["Ct"][:, row].astype(f32)
  return StepInputs(u=u, raw=raw, dt=dt, valid=valid, b=b, c=c, decay=jnp.exp(dt * refs["At"][...]))


def output_before_gate(step, h, refs):
  """y0 = <C_t, h_t> + D u_t, shape (1, block_d)."""
  return jnp.sum(step.c * h, axis=0, keepdims=True) + refs["D"][...] * step.u


def forward_chunk(refs, h, offset, length, cfg):
  """Runs one chunk of the recurrence from state h; writes the outputs; returns the new state."""

  def body(t, h):
    step = load_step(refs, offset + t, length, cfg)
    h = step.decay * h + (step.dt * step.u) * step.b
    y = output_before_gate(step, h, refs)
    if cfg.has_z:
      y = y * jax.nn.silu(refs["z"][pl.ds(offset + t, 1), :].astype(jnp.float32))
    y = jnp.where(step.valid, y, 0.0)
    refs["out"][pl.ds(offset + t, 1), :] = y.astype(refs["out"].dtype)
    return h

  return jax.lax.fori_loop(0, cfg.chunk, body, h)


def backward_chunk(refs, states_ref, h_start, lam, accumulators, offset, length, barrier, cfg):
  """Reverse pass over one chunk.

  Recomputes the chunk's states from its boundary state h_start into the program's workspace
  `states_ref` (chunk, d_state, block_d), then runs the adjoint recurrence backwards. `lam`
  enters as a_{t+1} lambda_{t+1} from the chunk after this one and leaves as a_0 lambda_0 of
  this chunk. `accumulators` = (dA^T, dD, d_bias) partial sums over this program's steps.
  Writes du, d_delta, dz (in their input dtypes) and the columns of this program's dB^T, dC^T.

  The workspace is written by some threads of the program and read by others: `barrier()`
  (a CTA barrier on the GPU) orders the recompute's stores before the reverse loop's loads, and
  those loads before the next chunk's stores.
  """
  f32 = jnp.float32

  def recompute(t, h):
    step = load_step(refs, offset + t, length, cfg)
    h = step.decay * h + (step.dt * step.u) * step.b
    states_ref[t] = h
    return h

  jax.lax.fori_loop(0, cfg.chunk, recompute, h_start)
  barrier()

  def body(i, carry):
    lam, (dA, dD, dbias) = carry
    t = cfg.chunk - 1 - i
    row = pl.ds(offset + t, 1)
    step = load_step(refs, offset + t, length, cfg)
    h = states_ref[t]
    h_prev = jnp.where(t > 0, states_ref[jnp.maximum(t - 1, 0)], h_start)
    g = refs["g_out"][row, :].astype(f32)
    if cfg.has_z:
      y0 = output_before_gate(step, h, refs)
      g, dz = pallas_common.gate_and_grad(refs["z"][row, :].astype(f32), y0, g)
      refs["dz"][row, :] = jnp.where(step.valid, dz, 0.0).astype(refs["dz"].dtype)
    gy = jnp.where(step.valid, g, 0.0)
    dD = dD + gy * step.u
    lam = lam + step.c * gy  # lambda_t = gy_t C_t + a_{t+1} lambda_{t+1}
    refs["dCt"][:, row] = jnp.sum(h * gy, axis=1, keepdims=True)
    decay_grad = lam * h_prev * step.decay
    lam_b = jnp.sum(lam * step.b, axis=0, keepdims=True)
    d_dt = jnp.sum(decay_grad * refs["At"][...], axis=0, keepdims=True) + lam_b * step.u
    dA = dA + decay_grad * step.dt
    refs["du"][row, :] = (gy * refs["D"][...] + lam_b * step.dt).astype(refs["du"].dtype)
    refs["dBt"][:, row] = jnp.sum(lam * (step.dt * step.u), axis=1, keepdims=True)
    d_raw = jnp.where(step.valid, d_dt * pallas_common.step_size_grad(step.raw, cfg), 0.0)
    refs["ddelta"][row, :] = d_raw.astype(refs["ddelta"].dtype)
    return lam * step.decay, (dA, dD, dbias + d_raw)

  result = jax.lax.fori_loop(0, cfg.chunk, body, (lam, accumulators))
  barrier()
  return result
