"""One step of the selective scan: mamba_ssm's `selective_state_update`, for streaming decode.

A decoder holds the state and feeds one token at a time; running the whole-sequence op on a
length-1 sequence would pay its dispatch and chunking for nothing. This op is the same
recurrence as `selective_scan` (docs/design.md, the op's semantics) for a single time step, with
the same step size and output transform (`elementwise.py`), so one step here equals one step of
the scan. It is plain JAX: differentiable by autodiff and fused by XLA into the caller.
"""

import jax
import jax.numpy as jnp

from mamba_jax_kernels.selective_scan import arguments, elementwise


def selective_scan_step(
  state: jax.Array,
  u: jax.Array,
  delta: jax.Array,
  A: jax.Array,
  B: jax.Array,
  C: jax.Array,
  D: jax.Array | None = None,
  z: jax.Array | None = None,
  delta_bias: jax.Array | None = None,
  delta_softplus: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """h = exp(dt A) state + dt B u, y = <C, h> + D u (gated by silu(z)): one step of the scan.

  Args:
    state: (batch, d_inner, d_state), the state after the previous step.
    u, delta: (batch, d_inner). z (optional, same shape) gates the output by silu(z).
    A: (d_inner, d_state), real. B, C: (batch, d_state) or (batch, groups, d_state); channel d
      reads group d // (d_inner // groups).
    D, delta_bias: optional (d_inner,). delta_softplus: dt = softplus(delta + delta_bias).

  Returns:
    y (batch, d_inner) in u.dtype and the new state (batch, d_inner, d_state), computed in
    float32 (float64 for float64 inputs), like the scan's final state.
  """
  B, C = arguments.check_step(state, u, delta, A, B, C, D, z, delta_bias)
  compute = elementwise.compute_dtype(state, u, delta, A, B, C, D, z, delta_bias)
  d_inner, groups = u.shape[1], B.shape[1]
  dt = elementwise.step_size(delta, delta_bias, delta_softplus, None, compute)  # (batch, d)
  u_c = u.astype(compute)
  per_channel = lambda x: jnp.repeat(x.astype(compute), d_inner // groups, axis=1)  # (b, d, n)
  new_state = jnp.exp(dt[..., None] * A.astype(compute)) * state.astype(compute) + (dt * u_c)[
    ..., None
  ] * per_channel(B)
  y = jnp.sum(new_state * per_channel(C), axis=-1)
  y = elementwise.finish_output(y, u_c, D, z, None)
  return y.astype(u.dtype), new_state
