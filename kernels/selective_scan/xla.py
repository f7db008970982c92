"""Chunked pure-JAX selective scan for any backend, with a hand-written reverse-scan gradient.

Time is cut into chunks. The forward keeps only the state at each chunk boundary; the backward
walks the chunks in reverse, recomputes the states of one chunk from its boundary state and runs
the adjoint recurrence there. So neither pass holds a (batch, length, d_inner, d_state) tensor
beyond one chunk, unlike autodiff of `lax.scan`, which stores the state at every step.

Inside a chunk the recurrence runs either "sequential": one fused `lax.scan` step per time step,
computing the decay, the output and (backward) every gradient of that step without keeping any
per-chunk coefficient tensor; or "associative": `lax.associative_scan` over the chunk's
materialised coefficients, with the gradients computed vectorised over the chunk.
`default_strategy` picks per platform (BUILD_NOTES.md has the measurements behind the choice).
The step size and the output transform are elementwise and differentiated by autodiff around
the custom-VJP core, where XLA fuses them.
"""

import jax
import jax.numpy as jnp

from mamba_jax_kernels.selective_scan import elementwise
from mamba_jax_kernels.selective_scan.options import XLA_STRATEGIES as STRATEGIES

# Bytes of one chunk's state tensor (chunk, batch, d_inner, d_state) that the default chunk size
# aims for: large enough to amortise per-chunk overhead, small enough to stay cache-friendly.
_CHUNK_STATE_BYTES = 4 * 2**20


def default_strategy(platform=None):
  """The in-chunk strategy `xla` and `auto` use when none is asked for.

  CPU: sequential, measured (BUILD_NOTES.md, "Selective scan on CPU", 2026-11-23: faster
  forward+backward at every benchmark shape, 1.6x to 2.0x; associative materialises every
  partial product). GPU and TPU: associative, by reasoning only, not measured yet (a sequential
  loop of small steps leaves an accelerator idle); the hardware self-check times both.
  """
  platform = platform or jax.default_backend()
  return "sequential" if platform == "cpu" else "associative"


def default_chunk_size(batch, length, d_inner, d_state):
  step_bytes = 4 * batch * d_inner * d_state
  chunk = 8
  while chunk < 256 and 2 * chunk * step_bytes <= _CHUNK_STATE_BYTES:
    chunk *= 2
  return max(1, min(chunk, length))


def selective_scan_xla(
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
  strategy=None,
):
  """Same contract as `reference.selective_scan_reference`."""
  batch, length, d_inner = u.shape
  d_state = A.shape[1]
  chunk = chunk_size or default_chunk_size(batch, length, d_inner, d_state)
  strategy = strategy or default_strategy()
  if strategy not in STRATEGIES:
    raise ValueError(f"selective_scan: xla strategy={strategy!r}; expected one of {STRATEGIES}")
  if not isinstance(chunk, int) or chunk < 1:
    raise ValueError(f"selective_scan: chunk_size={chunk!r}; expected a positive integer")
  f32 = jnp.float32
  dt = elementwise.step_size(delta, delta_bias, delta_softplus, lengths)
  u32 = u.astype(f32)
  h0 = (
    jnp.zeros((batch, d_inner, d_state), f32)
    if initial_state is None
    else initial_state.astype(f32)
  )
  y, h_final = _scan_core(
    dt, dt * u32, A.astype(f32), B.astype(f32), C.astype(f32), h0, chunk, strategy
  )
  out = elementwise.finish_output(y, u32, D, z, lengths)
  return out.astype(u.dtype), h_final


# ---------------------------------------------------------------------------------------------
# The core: h_t = exp(dt_t A) h_{t-1} + dtu_t B_t, y_t = <C_t, h_t>, all float32.


def _to_chunks(x, chunk):
  """(batch, length, ...) -> (n_chunks, chunk, batch, ...), zero-padded at the end."""
  batch, length = x.shape[:2]
  n_chunks = -(-length // chunk)
  x = jnp.pad(x, [(0, 0), (0, n_chunks * chunk - length)] + [(0, 0)] * (x.ndim - 2))
  x = x.reshape((batch, n_chunks, chunk) + x.shape[2:])
  return jnp.moveaxis(x, 0, 2)


def _from_chunks(x, length):
  x = jnp.moveaxis(x, 2, 0)
  x = x.reshape((x.shape[0], -1) + x.shape[3:])
  return x[:, :length]


def _per_channel(x_groups, d_inner):
  """(..., groups, d_state) -> (..., d_inner, d_state): each channel reads its group."""
  groups = x_groups.shape[-2]
  return jnp.repeat(x_groups, d_inner // groups, axis=-2)


def _group_sum(x, groups):
  """(..., d_inner, d_state) -> (..., groups, d_state): sum over the channels of each group."""
  d_inner, d_state = x.shape[-2:]
  return x.reshape(x.shape[:-2] + (groups, d_inner // groups, d_state)).sum(axis=-2)


def _associative_recurrence(a, b, h_init, reverse=False):
  """h_t = a_t h_{t-1} + b_t over axis 0 from h_init (h_{t+1} and from the end when reverse)."""
  edge = -1 if reverse else 0
  b = b.at[edge].add(a[edge] * h_init)

  def combine(first, second):
    return first[0] * second[0], second[0] * first[1] + second[1]

  return jax.lax.associative_scan(combine, (a, b), reverse=reverse)[1]


def _decay(dt, A):
  return jnp.exp(dt[..., None] * A)


def _chunk_states(dt, dtu, A, B, h_start, strategy):
  """States h_t of one chunk, (chunk, batch, d_inner, d_state)."""
  d_inner = dt.shape[-1]
  if strategy == "associative":
    return _associative_recurrence(
      _decay(dt, A), dtu[..., None] * _per_channel(B, d_inner), h_start
    )

  def step(h, x):
    dt_t, dtu_t, B_t = x
    h = _decay(dt_t, A) * h + dtu_t[..., None] * _per_channel(B_t, d_inner)
    return h, h

  return jax.lax.scan(step, h_start, (dt, dtu, B))[1]


def _forward_chunk(h, dt, dtu, B, C, A, strategy):
  """(state after the chunk, outputs y of the chunk) from the state before it."""
  d_inner = dt.shape[-1]
  if strategy == "associative":
    hs = _chunk_states(dt, dtu, A, B, h, strategy)
    return hs[-1], jnp.sum(hs * _per_channel(C, d_inner), axis=-1)

  def step(h, x):  # one fused step: nothing of size (chunk, ..., d_state) is kept
    dt_t, dtu_t, B_t, C_t = x
    h = _decay(dt_t, A) * h + dtu_t[..., None] * _per_channel(B_t, d_inner)
    return h, jnp.sum(h * _per_channel(C_t, d_inner), axis=-1)

  return jax.lax.scan(step, h, (dt, dtu, B, C))


def _backward_chunk(later, dA, dt, dtu, B, C, h_start, gy, A, strategy):
  """Adjoint pass over one chunk.

  `later` = a_{t+1} lambda_{t+1} flowing into the chunk's last step (lambda_t = dL/dh_t =
  gy_t C_t + a_{t+1} lambda_{t+1}); returns it for the chunk before, the running dA sum
  (per batch element), and per-step d_dt, d_dtu, dB, dC.
  """
  d_inner, groups = dt.shape[-1], B.shape[-2]
  hs = _chunk_states(dt, dtu, A, B, h_start, strategy)
  h_prev = jnp.concatenate([h_start[None], hs[:-1]], axis=0)

  def gradients(lam, a, h_prev, h, dt, dtu, B, gy):
    decay_grad = lam * h_prev * a  # dL/d(dt A) per state
    return (
      decay_grad * dt[..., None],
      (
        jnp.sum(decay_grad * A, axis=-1),
        jnp.sum(lam * _per_channel(B, d_inner), axis=-1),
        _group_sum(lam * dtu[..., None], groups),
        _group_sum(gy[..., None] * h, groups),
      ),
    )

  if strategy == "associative":
    a = _decay(dt, A)
    a_next = jnp.concatenate([a[1:], jnp.ones_like(a[:1])], axis=0)
    lam = _associative_recurrence(
      a_next, gy[..., None] * _per_channel(C, d_inner), later, reverse=True
    )
    dA_steps, grads = gradients(lam, a, h_prev, hs, dt, dtu, B, gy)
    return a[0] * lam[0], dA + dA_steps.sum(axis=0), grads

  def step(carry, x):
    later, dA = carry
    dt_t, dtu_t, B_t, C_t, h_prev_t, h_t, gy_t = x
    a = _decay(dt_t, A)
    lam = gy_t[..., None] * _per_channel(C_t, d_inner) + later
    dA_t, grads = gradients(lam, a, h_prev_t, h_t, dt_t, dtu_t, B_t, gy_t)
    return (a * lam, dA + dA_t), grads

  (later, dA), grads = jax.lax.scan(
    step, (later, dA), (dt, dtu, B, C, h_prev, hs, gy), reverse=True
  )
  return later, dA, grads


def _scan_core_primal(dt, dtu, A, B, C, h0, chunk, strategy):
  return _scan_core_fwd(dt, dtu, A, B, C, h0, chunk, strategy)[0]


_scan_core = jax.custom_vjp(_scan_core_primal, nondiff_argnums=(6, 7))


def _scan_core_fwd(dt, dtu, A, B, C, h0, chunk, strategy):
  length = dt.shape[1]
  xs = tuple(_to_chunks(x, chunk) for x in (dt, dtu, B, C))

  def chunk_forward(h, inputs):
    dt, dtu, B, C = inputs
    h_next, y = _forward_chunk(h, dt, dtu, B, C, A, strategy)
    return h_next, (y, h)

  h_final, (y, boundaries) = jax.lax.scan(chunk_forward, h0, xs)
  return (_from_chunks(y, length), h_final), (xs, A, boundaries)


def _scan_core_bwd(chunk, strategy, residuals, cotangents):
  (dt_c, dtu_c, B_c, C_c), A, boundaries = residuals
  g_y, g_final = cotangents
  length = g_y.shape[1]

  def chunk_backward(carry, inputs):
    later, dA = carry
    dt, dtu, B, C, h_start, gy = inputs
    later, dA, grads = _backward_chunk(later, dA, dt, dtu, B, C, h_start, gy, A, strategy)
    return (later, dA), grads

  inputs = (dt_c, dtu_c, B_c, C_c, boundaries, _to_chunks(g_y, chunk))
  (d_h0, dA), grads = jax.lax.scan(
    chunk_backward, (g_final, jnp.zeros_like(g_final)), inputs, reverse=True
  )
  d_dt, d_dtu, dB, dC = (_from_chunks(g, length) for g in grads)
  return d_dt, d_dtu, dA.sum(axis=0), dB, dC, d_h0


_scan_core.defvjp(_scan_core_fwd, _scan_core_bwd)
