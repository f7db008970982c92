"""Readable selective scan: `lax.scan` over time. The ground truth for every test.

Computes in float32 for inputs up to float32 (docs/design.md, the op's semantics) and in float64
for float64 inputs, so that it can itself be checked against finite differences.

Takes the normalised arguments of `api.selective_scan` (B and C grouped as
(batch, length, groups, d_state), every optional argument possibly None) and is differentiated
by ordinary autodiff, so it needs no hand-written gradient to be trusted.
"""

import jax
import jax.numpy as jnp

from mamba_jax_kernels.selective_scan import elementwise


def selective_scan_reference(
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
):
  """Returns (out in u.dtype, final state (batch, d_inner, d_state) in the compute dtype)."""
  batch, length, d_inner = u.shape
  groups, d_state = B.shape[2], B.shape[3]
  compute = elementwise.compute_dtype(u, delta, A, B, C, D, z, delta_bias, initial_state)
  dt = elementwise.step_size(delta, delta_bias, delta_softplus, lengths, compute)  # 0 when masked
  u_c = u.astype(compute)
  # Each channel reads the B/C of its group: channel d is in group d // (d_inner // groups).
  B_per_channel = jnp.repeat(B.astype(compute), d_inner // groups, axis=2)  # (b, l, d, n)
  C_per_channel = jnp.repeat(C.astype(compute), d_inner // groups, axis=2)
  A_c = A.astype(compute)
  h0 = (
    jnp.zeros((batch, d_inner, d_state), compute)
    if initial_state is None
    else initial_state.astype(compute)
  )

  def step(h, inputs):
    dt_t, u_t, b_t, c_t = inputs  # (b, d), (b, d), (b, d, n), (b, d, n)
    h = jnp.exp(dt_t[..., None] * A_c) * h + (dt_t * u_t)[..., None] * b_t
    return h, jnp.sum(h * c_t, axis=-1)

  time_major = lambda x: jnp.moveaxis(x, 1, 0)
  h_final, y = jax.lax.scan(
    step,
    h0,
    (time_major(dt), time_major(u_c), time_major(B_per_channel), time_major(C_per_channel)),
  )
  y = jnp.moveaxis(y, 0, 1)
  out = elementwise.finish_output(y, u_c, D, z, lengths)
  return out.astype(u.dtype), h_final
