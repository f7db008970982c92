"""Kernel bodies shared by the Pallas TPU and GPU variants of the selective scan.

Layout inside a kernel (one batch element, one block of `block_d` channels): the state is
(d_state, block_d) with channels on the fast (lane) axis; u, delta, z and the outputs are
(time, block_d) rows; B and C arrive transposed as (d_state, time) so that step t reads a column.
Everything is float32. The step size, the D skip, the silu(z) gate and the length mask are fused
here, so the kernel reads each input once.

`offset` is where the chunk starts inside the refs (0 for the TPU variant, whose refs are one
chunk; chunk * c for the GPU variant, whose refs span the whole length); `pos0` is the chunk's
first position in the sequence, compared with the example's length for masking.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from kernels.selective_scan import elementwise


@dataclasses.dataclass(frozen=True)
class KernelConfig:
  """Static description of one kernel launch (hashable: it is a custom_vjp nondiff argument)."""
  chunk: int
  block_d: int
  has_z: bool
  delta_softplus: bool
  backend: str  # "tpu" or "gpu"
  interpret: bool


@dataclasses.dataclass
class StepInputs:
  """Per-step float32 values that the forward and backward recurrences both need."""
  u: jax.Array       # (1, block_d)
  raw: jax.Array     # (1, block_d) delta + bias, before softplus
  dt: jax.Array      # (1, block_d) step size, 0 where masked
  valid: jax.Array   # () bool
  b: jax.Array       # (d_state, 1)
  c: jax.Array       # (d_state, 1)
  decay: jax.Array   # (d_state, block_d) exp(dt A)


def load_step(refs, index, position, length, cfg):
  f32 = jnp.float32
  row = pl.ds(index, 1)
  u = refs["u"][row, :].astype(f32)
  raw = refs["delta"][row, :].astype(f32) + refs["bias"][...]
  dt = elementwise.softplus(raw) if cfg.delta_softplus else raw
  valid = position < length
  dt = jnp.where(valid, dt, 0.0)
  b = refs["Bt"][:, row].astype(f32)
  c = refs["Ct"][:, row].astype(f32)
  return StepInputs(u=u, raw=raw, dt=dt, valid=valid, b=b, c=c,
                    decay=jnp.exp(dt * refs["At"][...]))


def output_before_gate(step, h, refs):
  """y0 = <C_t, h_t> + D u_t, shape (1, block_d)."""
  return jnp.sum(step.c * h, axis=0, keepdims=True) + refs["D"][...] * step.u


def forward_chunk(refs, h, offset, pos0, length, cfg):
  """Runs one chunk of the recurrence from state h; writes the outputs; returns the new state."""

  def body(t, h):
    step = load_step(refs, offset + t, pos0 + t, length, cfg)
    h = step.decay * h + (step.dt * step.u) * step.b
    y = output_before_gate(step, h, refs)
    if cfg.has_z:
      y = y * jax.nn.silu(refs["z"][pl.ds(offset + t, 1), :].astype(jnp.float32))
    y = jnp.where(step.valid, y, 0.0)
    refs["out"][pl.ds(offset + t, 1), :] = y.astype(refs["out"].dtype)
    return h

  return jax.lax.fori_loop(0, cfg.chunk, body, h)


def backward_chunk(refs, states_ref, h_start, lam, accumulators, offset, pos0, length, cfg):
  """Reverse pass over one chunk.

  Recomputes the chunk's states from its boundary state h_start into `states_ref`
  (chunk, d_state, block_d), then runs the adjoint recurrence backwards. `lam` enters as
  a_{t+1} lambda_{t+1} from the chunk after this one and leaves as a_0 lambda_0 of this chunk.
  `accumulators` = (dA^T, dD, d_bias) partial sums over this program's steps.
  Writes du, d_delta, dz and the columns of this block's partial dB^T and dC^T.
  """
  f32 = jnp.float32

  def recompute(t, h):
    step = load_step(refs, offset + t, pos0 + t, length, cfg)
    h = step.decay * h + (step.dt * step.u) * step.b
    states_ref[t] = h
    return h

  jax.lax.fori_loop(0, cfg.chunk, recompute, h_start)

  def body(i, carry):
    lam, (dA, dD, dbias) = carry
    t = cfg.chunk - 1 - i
    row = pl.ds(offset + t, 1)
    step = load_step(refs, offset + t, pos0 + t, length, cfg)
    h = states_ref[t]
    h_prev = jnp.where(t > 0, states_ref[jnp.maximum(t - 1, 0)], h_start)
    g = refs["g_out"][row, :].astype(f32)
    if cfg.has_z:
      z = refs["z"][row, :].astype(f32)
      gate = jax.nn.sigmoid(z)
      y0 = output_before_gate(step, h, refs)
      dz = g * y0 * gate * (1.0 + z * (1.0 - gate))
      refs["dz"][row, :] = jnp.where(step.valid, dz, 0.0)
      g = g * z * gate
    gy = jnp.where(step.valid, g, 0.0)
    dD = dD + gy * step.u
    lam = lam + step.c * gy  # lambda_t = gy_t C_t + a_{t+1} lambda_{t+1}
    refs["dCt"][:, row] = jnp.sum(h * gy, axis=1, keepdims=True)
    decay_grad = lam * h_prev * step.decay
    lam_b = jnp.sum(lam * step.b, axis=0, keepdims=True)
    d_dt = jnp.sum(decay_grad * refs["At"][...], axis=0, keepdims=True) + lam_b * step.u
    dA = dA + decay_grad * step.dt
    refs["du"][row, :] = gy * refs["D"][...] + lam_b * step.dt
    refs["dBt"][:, row] = jnp.sum(lam * (step.dt * step.u), axis=1, keepdims=True)
    d_raw = d_dt * (elementwise.softplus_grad(step.raw) if cfg.delta_softplus else 1.0)
    d_raw = jnp.where(step.valid, d_raw, 0.0)
    refs["ddelta"][row, :] = d_raw
    return lam * step.decay, (dA, dD, dbias + d_raw)

  return jax.lax.fori_loop(0, cfg.chunk, body, (lam, accumulators))
