"""Kernel bodies of the Pallas TPU (Mosaic) selective scan: one chunk of one (batch element,
channel block) per grid step.

Layout inside a grid step: the state is (d_state, block_d) float32, channels on lanes; u, delta,
z, the outputs and their cotangents are (chunk, block_d) rows; B and C are float32 (d_state,
chunk) tiles (B^T, C^T of the chunk, transposed outside the kernel), so a step's B_t is a static
lane slice. The rows a step multiplies into the state (dt, dt u, and the backward's gy) are
kept as one (chunk, 128) array per 128 lanes and loaded already broadcast over the state's
sublanes (`_row`). Each chunk:

1. stage: the chunk's inputs are read once, cast to float32 and the step size (bias, softplus,
   length mask) and dt u computed for the whole chunk at once, into VMEM scratch;
2. forward: one fused step per time step, h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t and the
   output row <C_t, h_t>; nothing of size (d_state, block_d) goes to VMEM (storing the decays
   and inputs first made the forward bound by the one vector-store slot);
3. backward: the same step recomputes the states, keeping exp(dt A) and h_t in
   (chunk, d_state, block_d) scratch for the reverse (adjoint) loop, and (with a gate) the
   output's partial sums the gate's gradient needs;
4. the D skip, gate and mask for the whole chunk, cast and stored once.

Every time loop of the compiled kernel is a Python loop: unrolled, with static indices, so no
index is dynamic on any axis and Mosaic sees straight-line code to schedule (`for_each_step`;
interpret mode runs the same step bodies in a rolled loop). Gradients of B and C come out as
(d_state, chunk) tiles, a column stored per step.
"""

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from mamba_jax_kernels.selective_scan import pallas_common

F32 = jnp.float32
SUBLANES, LANES = 8, 128
# (chunk, block_d) float32, or (block_d / 128, chunk, 128) when `split_rows`: rows a step
# reads broadcast over the state's sublanes (`_row`)
BROADCAST_ROW_SCRATCH = ("dt", "dtu")
BACKWARD_BROADCAST_ROW_SCRATCH = ("gy",)  # backward only
ROW_SCRATCH = ("y",)  # (chunk, block_d) float32
BACKWARD_ROW_SCRATCH = ("lam_b", "ddt")  # (chunk, block_d) float32, backward only
STATE_SCRATCH = ("decay", "states")  # (chunk, d_state, block_d) float32, backward only


def _lane_sum(x):
  """Sum over the lanes (channels) of x (d_state, block_d), (d_state, 1): the 128-lane tiles
  added as a tree (not a chain), then one cross-lane reduction."""
  if x.shape[1] % LANES == 0:
    tiles = [x[:, k * LANES : (k + 1) * LANES] for k in range(x.shape[1] // LANES)]
    while len(tiles) > 1:
      pairs = [a + b for a, b in zip(tiles[::2], tiles[1::2])]
      tiles = pairs + tiles[len(pairs) * 2 :]
    x = tiles[0]
  return jnp.sum(x, axis=1, keepdims=True)


def split_rows(block_d):
  """Whether the rows a step broadcasts are kept as (block_d / 128, chunk, 128) scratch, one
  (chunk, 128) array per 128 lanes: a strided load needs a last dimension of 128 lanes."""
  return block_d % LANES == 0


def store_rows(ref, x):
  """Stores x (chunk, block_d) into a row scratch of either layout."""
  if ref.ndim == 2:
    ref[...] = x
    return
  for k in range(ref.shape[0]):
    ref[k] = x[:, k * LANES : (k + 1) * LANES]


def load_rows(ref):
  """x (chunk, block_d) from a row scratch of either layout."""
  if ref.ndim == 2:
    return ref[...]
  return jnp.concatenate([ref[k] for k in range(ref.shape[0])], axis=1)


def _row(ref, t, rows=1, cfg=None):
  """Row t of a row scratch, (1, block_d), or when `rows` > 1 and the kernel is compiled with
  static t, the row already broadcast over `rows` sublanes: loaded with a sublane stride of 0
  (every sublane reads row t; the `vld ... ss:$0` XLA:TPU itself emits for broadcasts), so the
  step needs no sublane permutes (2 per vector and row otherwise). Interpret mode has no
  stride-0 load: there the row is read once and broadcast by the arithmetic."""
  if ref.ndim == 2:
    return ref[pl.ds(t, 1), :]
  tiles = ref.shape[0]
  if rows > 1 and isinstance(t, int) and cfg is not None and not cfg.interpret:
    x = jnp.concatenate([ref[k, pl.ds(t, SUBLANES, stride=0), :] for k in range(tiles)], axis=1)
    if rows <= SUBLANES:
      return x[:rows]
    if rows % SUBLANES == 0:
      return jnp.concatenate([x] * (rows // SUBLANES), axis=0)  # the same vectors again
    return x[:1]
  return jnp.concatenate([ref[k, pl.ds(t, 1), :] for k in range(tiles)], axis=1)


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


def _column(tile, t):
  """Column t of a (d_state, chunk) float32 tile, (d_state, 1): a static lane slice in the
  compiled kernel."""
  if isinstance(t, int):
    return tile[:, t : t + 1]
  return jax.lax.dynamic_slice_in_dim(tile, t, 1, axis=1)


def stage(refs, s, t0, length, cfg):
  """Phase 1. Returns u, delta + bias and the validity mask, (chunk, block_d) each."""
  T, bd = refs["u"].shape
  u = refs["u"][...].astype(F32)
  raw = refs["delta"][...].astype(F32) + refs["bias"][...]
  valid = t0 + jax.lax.broadcasted_iota(jnp.int32, (T, bd), 0) < length
  dt = pallas_common.step_size(raw, valid, cfg)
  store_rows(s["dt"], dt)
  store_rows(s["dtu"], dt * u)
  return u, raw, valid


def bc_tiles(refs):
  """B^T and C^T of the chunk, (d_state, chunk) float32: a step's B_t is a column of it."""
  return refs["B"][...].astype(F32), refs["C"][...].astype(F32)


LOG2_E = 1.4426950408889634


def _decay(s, A2, t, cfg):
  """exp(dt_t A) as 2^(dt_t A log2 e), with A2 = A log2 e formed once per chunk: the TPU
  evaluates exp as a power of two, so this saves a multiply per state vector and step."""
  return jnp.exp2(_row(s["dt"], t, A2.shape[0], cfg) * A2)


def _input(s, bt, t, cfg):
  return _row(s["dtu"], t, bt.shape[0], cfg) * _column(bt, t)


def recompute_states(refs, s, h, bt, ct, cfg):
  """Fills s["decay"][t] = exp(dt_t A) and s["states"][t] = h_t; returns h_T. With ct (the
  gate needs y0), also the output terms <C_t, h_t> in the same step (`_output_term`)."""
  A2 = refs["At"][...] * LOG2_E
  deferred = deferred_sums(*A2.shape)

  def step(t, h):
    a = _decay(s, A2, t, cfg)
    s["decay"][t] = a
    h = a * h + _input(s, bt, t, cfg)
    s["states"][t] = h
    if ct is not None:
      _output_term(s, ct, h, t, deferred)
    return h

  return for_each_step(cfg, step, h)


def _output_term(s, ct, h, t, deferred):
  """<C_t, h_t>: as 8 partial sums (`_partial_sum`) when deferred, else summed into s["y"]."""
  if deferred:
    _partial_sum(s["p"], _column(ct, t) * h, t)
  else:
    s["y"][pl.ds(t, 1), :] = jnp.sum(_column(ct, t) * h, axis=0, keepdims=True)


def _outputs(refs, s, u, cfg):
  """y0 = <C_t, h_t> + D u_t for the chunk, (chunk, block_d), from what `_output_term` left."""
  T, bd = refs["u"].shape
  y = _deferred_sum(s["p"], T) if deferred_sums(refs["At"].shape[0], bd) else s["y"][...]
  return y + refs["D"][...] * u


def deferred_sums(d_state, block_d):
  """Whether the kernels defer their sums over d_state (C_t h_t in the forward; the d(dt) and
  B.lambda rows in the backward) out of the step (`_partial_sum`): the state must fill whole
  (8, 128) vectors."""
  return d_state % SUBLANES == 0 and block_d % LANES == 0


def _partial_sum(ref, p, t):
  """Stores p (d_state, block_d) summed over its (8, block_d) slices: 8 partial sums per
  channel, as rows 8t..8t+7 of a (block_d / 128, chunk * 8, 128) scratch (`_deferred_sum`
  finishes them)."""
  p8 = p[:SUBLANES]
  for i in range(1, p.shape[0] // SUBLANES):
    p8 = p8 + p[SUBLANES * i : SUBLANES * (i + 1)]
  for k in range(ref.shape[0]):
    ref[k, pl.ds(t * SUBLANES, SUBLANES), :] = p8[:, k * LANES : (k + 1) * LANES]


def _deferred_sum(ref, T):
  """y (chunk, block_d) from the partial sums: the 8 rows of step t are read with a sublane
  stride of 8 (rows r, r + 8, ... hold partial r of each step) and added, whole vectors at a
  time, instead of a sublane reduction (rotates and adds) inside every step."""
  # (interpret mode discharges a strided load only when every index is a slice)
  rows = lambda k, r: ref[pl.ds(k, 1), pl.ds(r, T, stride=SUBLANES), :][0]
  tiles = []
  for k in range(ref.shape[0]):
    y = rows(k, 0)
    for r in range(1, SUBLANES):
      y = y + rows(k, r)
    tiles.append(y)
  return jnp.concatenate(tiles, axis=1)


def forward_chunk(refs, s, h, t0, length, cfg):
  """Runs one chunk from state h, stores its outputs; returns the state after the chunk. The
  step is fused (decay, input, update, output): nothing of size d_state x block_d is stored."""
  u, _, valid = stage(refs, s, t0, length, cfg)
  bt, ct = bc_tiles(refs)
  A2 = refs["At"][...] * LOG2_E
  deferred = deferred_sums(*A2.shape)

  def step(t, h):
    h = _decay(s, A2, t, cfg) * h + _input(s, bt, t, cfg)
    _output_term(s, ct, h, t, deferred)
    return h

  h = for_each_step(cfg, step, h)
  y = _outputs(refs, s, u, cfg)
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
  bt, ct = bc_tiles(refs)
  recompute_states(refs, s, h_start, bt, ct if cfg.has_z else None, cfg)
  g = refs["g_out"][...].astype(F32)
  if cfg.has_z:
    y0 = _outputs(refs, s, u, cfg)
    g, dz = pallas_common.gate_and_grad(refs["z"][...].astype(F32), y0, g)
    refs["dz"][...] = jnp.where(valid, dz, 0.0).astype(refs["dz"].dtype)
  gy = jnp.where(valid, g, 0.0)
  store_rows(s["gy"], gy)

  A = refs["At"][...]
  d_state = A.shape[0]
  deferred = deferred_sums(*A.shape)

  def adjoint(t, carry):
    lam, dA = carry
    gy_t, a_t, h_t = _row(s["gy"], t, d_state, cfg), s["decay"][t], s["states"][t]
    lam = lam + _column(ct, t) * gy_t
    refs["dCt"][:, pl.ds(t, 1)] = _lane_sum(h_t * gy_t)
    decayed = lam * a_t  # a_t lambda_t: this step's decay gradient and the next step's carry
    decay_grad = decayed * _previous_state(s, t, h_start)
    dA = dA + decay_grad * _row(s["dt"], t, d_state, cfg)
    if deferred:
      _partial_sum(s["p"], decay_grad * A, t)
      _partial_sum(s["p2"], lam * _column(bt, t), t)
    else:
      s["ddt"][pl.ds(t, 1), :] = jnp.sum(decay_grad * A, axis=0, keepdims=True)
      s["lam_b"][pl.ds(t, 1), :] = jnp.sum(lam * _column(bt, t), axis=0, keepdims=True)
    dtu_t = _row(s["dtu"], t, d_state, cfg)
    refs["dBt"][:, pl.ds(t, 1)] = _lane_sum(lam * dtu_t)
    return decayed, dA

  lam, dA = for_each_step(cfg, adjoint, (lam, jnp.zeros_like(A)), reverse=True)
  if deferred:
    s["ddt"][...] = _deferred_sum(s["p"], T)
    s["lam_b"][...] = _deferred_sum(s["p2"], T)
  lam_b = s["lam_b"][...]
  refs["du"][...] = (gy * refs["D"][...] + lam_b * load_rows(s["dt"])).astype(refs["du"].dtype)
  d_raw = (s["ddt"][...] + lam_b * u) * pallas_common.step_size_grad(raw, cfg)
  d_raw = jnp.where(valid, d_raw, 0.0)
  refs["ddelta"][...] = d_raw.astype(refs["ddelta"].dtype)
  dD = jnp.sum(gy * u, axis=0, keepdims=True)
  d_bias = jnp.sum(d_raw, axis=0, keepdims=True)
  return lam, dA, dD, d_bias
