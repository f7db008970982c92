"""Kernel bodies of the Pallas GPU (Triton) selective scan: one program steps through the whole
sequence of one (batch element, channel block).

Layout inside a program: the state is (d_state, block_d) float32 with channels on the fast
axis, so with one warp per 32 channels each thread holds one channel's whole state and the sums
over d_state stay in its registers; u, delta, z and the outputs are (time, block_d) rows; B and
C are float32 (time, d_state) rows, so a step's B_t is one contiguous vector that every thread
reads whole. Refs span the whole padded length; `offset` is where the chunk starts in them.

What the time loops avoid (each costs instructions per step, `gpu_sass.py` counts them):
layout conversions (A is loaded once, and every state-shaped global access keeps a thread per
channel, `tile_index`: a vectorised one splits d_state across threads and converts through
shared memory with barriers); exp (exp2 with A pre-multiplied by log2 e);
waiting on a step's loads (the next step's inputs are loaded one step ahead, in the loop
carry); moving that carry each step (two steps per loop iteration, `time_loop`). The backward
sums over channels once per step in each of its loops (dC_t in the recompute, dB_t in the
reverse loop, `channel_sum`): they cross the warp's threads, but the workspace then holds
only the states, each written once and read once.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from mamba_jax_kernels.selective_scan import pallas_common

LOG2E = 1.4426950408889634
# Time steps per iteration of the time loops (`time_loop`).
UNROLL = 2


@dataclasses.dataclass
class Hoisted:
  """What a program loads once, before its time loops: per-channel parameters and its length."""

  A2: jax.Array  # (d_state, block_d) A log2(e)
  D: jax.Array  # (1, block_d)
  bias: jax.Array  # (1, block_d)
  length: jax.Array  # () int32, this batch element's length
  end: int  # the padded length: the last step's prefetch is clamped to it
  tile: tuple  # `tile_index`: index arrays of the state-shaped global accesses


def tile_index(length, shape):
  """Index arrays (d_state, block_d) for the kernels' 2-D global accesses (state-shaped tiles:
  A, boundary states, the workspace, dA): the channel index plus a runtime 0 (`length < 0`),
  so Triton cannot prove the addresses 16-byte aligned, does not vectorise the access, and
  keeps the compute layout (a thread per channel, its d_state values in its registers). A
  vectorised access gets 4 channels x 4 states per thread, and every step then converts
  between the two layouts through shared memory, with barriers."""
  zero = (length < 0).astype(jnp.int32)
  rows = jax.lax.broadcasted_iota(jnp.int32, shape, 0)
  lanes = jax.lax.broadcasted_iota(jnp.int32, shape, 1) + zero
  return rows, lanes


def load_tile(ref, tile, *lead):
  return ref[(*lead, *tile)]


def store_tile(ref, tile, value, *lead):
  ref[(*lead, *tile)] = value


def hoist(refs):
  length = refs["lengths"][pl.program_id(0)]
  tile = tile_index(length, refs["At"].shape)
  return Hoisted(
    A2=load_tile(refs["At"], tile) * LOG2E,
    D=refs["D"][...],
    bias=refs["bias"][...],
    length=length,
    end=refs["u"].shape[0],
    tile=tile,
  )


def prefetch(refs, index, names, hoisted):
  """The raw per-step inputs `names` at step `index` (clamped into the sequence): rows in their
  stored dtype, B and C float32 broadcast to (d_state, block_d). Issued a step early, carried.

  B_t broadcast before it is carried keeps the load in the layout its use needs (every thread
  its own copy of the vector, one 16-byte load per 4 values); carried as a vector, Triton loads
  it spread over the threads and redistributes it through shared memory each step."""
  index = jnp.clip(index, 0, hoisted.end - 1)
  width = (hoisted.A2.shape[0], refs["u"].shape[1])
  return {
    name: jnp.broadcast_to(refs[name][index, :][:, None], width)
    if name in ("B", "C")
    else refs[name][pl.ds(index, 1), :]
    for name in names
  }


def steps_per_iteration(chunk):
  """Time steps in one iteration of the time loops (`time_loop`): UNROLL where it divides the
  chunk, else 1."""
  return UNROLL if chunk % UNROLL == 0 else 1


def time_loop(chunk, step, carry, reverse=False):
  """`step(t, carry)` for t = 0 .. chunk - 1 (reversed if asked), `steps_per_iteration` steps
  per iteration of the loop: two steps per iteration let the register allocator alternate the
  loop carry (the prefetched inputs, h, lambda) instead of moving it each step (about 50 MOVs
  per step in the backward)."""
  per = steps_per_iteration(chunk)

  def body(i, carry):
    for k in range(per):
      j = i * per + k
      carry = step(chunk - 1 - j if reverse else j, carry)
    return carry

  return jax.lax.fori_loop(0, chunk // per, body, carry)


@dataclasses.dataclass
class StepInputs:
  """Per-step float32 values that the forward and backward recurrences both need."""

  u: jax.Array  # (1, block_d)
  raw: jax.Array  # (1, block_d) delta + bias, before softplus
  dt: jax.Array  # (1, block_d) step size, 0 where masked
  valid: jax.Array  # () bool
  b: jax.Array  # (d_state, block_d), B_t broadcast over channels
  c: jax.Array  # (d_state, block_d)
  decay: jax.Array  # (d_state, block_d) exp(dt A)


def step_inputs(raw_inputs, hoisted, index, cfg):
  f32 = jnp.float32
  u = raw_inputs["u"].astype(f32)
  raw = raw_inputs["delta"].astype(f32) + hoisted.bias
  valid = index < hoisted.length
  dt = pallas_common.step_size(raw, valid, cfg)
  return StepInputs(
    u=u,
    raw=raw,
    dt=dt,
    valid=valid,
    b=raw_inputs["B"],
    c=raw_inputs["C"],
    decay=jnp.exp2(dt * hoisted.A2),
  )


def forward_inputs(cfg):
  return ("u", "delta", "B", "C") + (("z",) if cfg.has_z else ())


def forward_chunk(refs, hoisted, h, inputs, offset, cfg):
  """Runs one chunk of the recurrence from state h, with `inputs` its first step's prefetched
  inputs; writes the outputs; returns the new state and the next chunk's first inputs."""
  names = forward_inputs(cfg)

  def body(t, carry):
    h, current = carry
    index = offset + t
    upcoming = prefetch(refs, index + 1, names, hoisted)
    step = step_inputs(current, hoisted, index, cfg)
    h = step.decay * h + (step.dt * step.u) * step.b
    y = jnp.sum(step.c * h, axis=0, keepdims=True) + hoisted.D * step.u
    if cfg.has_z:
      y = y * jax.nn.silu(current["z"].astype(jnp.float32))
    y = jnp.where(step.valid, y, 0.0)
    refs["out"][pl.ds(index, 1), :] = y.astype(refs["out"].dtype)
    return h, upcoming

  return time_loop(cfg.chunk, body, (h, inputs))


def backward_inputs(cfg):
  """What the backward's recompute loop prefetches: the forward's inputs and the output's
  cotangent (the gate's gradient and dC are formed there, where h_t is in registers)."""
  return forward_inputs(cfg) + ("g_out",)


# What the backward's reverse loop prefetches.
REVERSE_INPUTS = ("u", "delta", "B", "C")


def output_gradient(refs, current, step, h, hoisted, row, cfg):
  """gy_t, the cotangent of y0_t = <C_t, h_t> + D u_t (through the gate; zero where masked).
  Writes dz_t, which needs y0_t and so h_t."""
  g = current["g_out"].astype(jnp.float32)
  if cfg.has_z:
    y0 = jnp.sum(step.c * h, axis=0, keepdims=True) + hoisted.D * step.u
    g, dz = pallas_common.gate_and_grad(current["z"].astype(jnp.float32), y0, g)
    refs["dz"][row, :] = jnp.where(step.valid, dz, 0.0).astype(refs["dz"].dtype)
  return jnp.where(step.valid, g, 0.0)


def channel_sum(x):
  """(d_state, block_d) -> (1, d_state): the sum over this program's channels, one warp's
  threads (5 shuffles per state element; the row's store goes through shared memory)."""
  return jnp.sum(x, axis=1)[None, :]


def backward_chunk(refs, hoisted, ws, h_start, carry, offset, barrier, cfg):
  """Reverse pass over one chunk.

  The recompute loop runs the chunk forwards from its boundary state h_start, carrying h_t:
  it stores each state into the program's workspace `ws["states"]` (chunk + 1, d_state,
  block_d; entry t holds h_{t-1}, entry 0 h_start), and, as h_t is in registers there, forms
  the output's cotangent gy_t (and dz_t) and dC_t = sum_d h_t gy_t; gy_t goes to `ws["gy"]`.
  The reverse loop then runs the adjoint recurrence backwards, reading each state h_{t-1} once
  and forming dB_t = sum_d lambda_t dt_t u_t in the step, so no adjoint is stored. `carry` =
  (lam, accumulators, inputs): lam enters as a_{t+1} lambda_{t+1} from the chunk after this one
  and leaves as a_0 lambda_0 of this chunk; accumulators = (dA^T, dD, d_bias) partial sums over
  this program's steps; inputs are the reverse loop's prefetched inputs of this chunk's last
  step, and leave as the previous chunk's. Writes du, d_delta, dz (in their input dtypes) and
  this program's rows of dB and dC.

  A sum over channels crosses the warp's threads (`channel_sum`); one per step in each loop
  keeps both within the issue budget (`gpu_sass.py` counts them). Every workspace access keeps
  a thread per channel (`tile_index`); `barrier()` (a CTA barrier on the GPU, outside the time
  loops) orders the recompute's stores before the reverse loop's loads, and those before the
  next chunk's stores.
  """
  names = backward_inputs(cfg)
  lam, accumulators, last_inputs = carry

  def recompute(t, carry):
    h, current = carry
    index = offset + t
    upcoming = prefetch(refs, index + 1, names, hoisted)
    step = step_inputs(current, hoisted, index, cfg)
    h = step.decay * h + (step.dt * step.u) * step.b
    store_tile(ws["states"], hoisted.tile, h, t + 1)
    row = pl.ds(index, 1)
    gy = output_gradient(refs, current, step, h, hoisted, row, cfg)
    ws["gy"][pl.ds(t, 1), :] = gy
    refs["dC"][row, :] = channel_sum(h * gy)
    return h, upcoming

  store_tile(ws["states"], hoisted.tile, h_start, 0)
  first = prefetch(refs, offset, names, hoisted)
  time_loop(cfg.chunk, recompute, (h_start, first))
  barrier()

  def body(t, carry):
    lam, (dA, dD, dbias), current = carry
    index = offset + t
    upcoming = prefetch(refs, index - 1, REVERSE_INPUTS, hoisted)
    h_prev = load_tile(ws["states"], hoisted.tile, t)
    gy = ws["gy"][pl.ds(t, 1), :]
    row = pl.ds(index, 1)
    step = step_inputs(current, hoisted, index, cfg)
    dD = dD + gy * step.u
    lam = lam + step.c * gy  # lambda_t = gy_t C_t + a_{t+1} lambda_{t+1}
    refs["dB"][row, :] = channel_sum(lam * (step.dt * step.u))
    lam_next = lam * step.decay  # a_t lambda_t, what step t - 1 adds to
    decay_grad = lam_next * h_prev
    lam_b = jnp.sum(lam * step.b, axis=0, keepdims=True)
    d_dt = jnp.sum(decay_grad * hoisted.A2, axis=0, keepdims=True) / LOG2E + lam_b * step.u
    dA = dA + decay_grad * step.dt
    refs["du"][row, :] = (gy * hoisted.D + lam_b * step.dt).astype(refs["du"].dtype)
    d_raw = jnp.where(step.valid, d_dt * pallas_common.step_size_grad(step.raw, cfg), 0.0)
    refs["ddelta"][row, :] = d_raw.astype(refs["ddelta"].dtype)
    return lam_next, (dA, dD, dbias + d_raw), upcoming

  lam, accumulators, previous = time_loop(
    cfg.chunk, body, (lam, accumulators, last_inputs), reverse=True
  )
  barrier()
  return lam, accumulators, previous
