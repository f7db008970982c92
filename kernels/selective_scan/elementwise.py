"""Elementwise pieces of the selective scan shared by every implementation.

The recurrence differs between implementations; the step size before it and the output
transform after it must not, so they live here once.
"""

import jax
import jax.numpy as jnp

# mamba_ssm's softplus returns its argument unchanged above this threshold.
SOFTPLUS_THRESHOLD = 20.0


def softplus(x: jax.Array) -> jax.Array:
  """mamba_ssm's softplus: log(1 + exp(x)), and x itself above SOFTPLUS_THRESHOLD.

  The op applies it to delta + delta_bias when delta_softplus; callers that form the step
  themselves (a scaled step, say) use this one so that their step matches the op's.
  """
  safe = jnp.minimum(x, SOFTPLUS_THRESHOLD)
  return jnp.where(x <= SOFTPLUS_THRESHOLD, jnp.log1p(jnp.exp(safe)), x)


def softplus_grad(x):
  """d softplus / dx with the same threshold as `softplus`."""
  return jnp.where(x <= SOFTPLUS_THRESHOLD, jax.nn.sigmoid(x), 1.0)


def valid_mask(lengths, batch, length):
  """(batch, length) bool: True where t < lengths[b]; all True when lengths is None."""
  positions = jnp.arange(length)[None, :]
  if lengths is None:
    return jnp.ones((batch, length), bool)
  return positions < lengths[:, None]


def compute_dtype(*arrays):
  """float32 for every input precision up to float32; float64 when the inputs are float64."""
  return jnp.promote_types(jnp.float32, jnp.result_type(*[a for a in arrays if a is not None]))


def step_size(delta, delta_bias, delta_softplus, lengths, dtype=jnp.float32):
  """Step dt in dtype, the shape of delta: (batch, length, d_inner), or any shape when lengths is
  None (one step: (batch, d_inner)). Zero at masked steps, so they leave h unchanged."""
  dt = delta.astype(dtype)
  if delta_bias is not None:
    dt = dt + delta_bias.astype(dtype)
  if delta_softplus:
    dt = softplus(dt)
  if lengths is not None:
    dt = jnp.where(valid_mask(lengths, dt.shape[0], dt.shape[1])[..., None], dt, 0.0)
  return dt


def finish_output(y, u, D, z, lengths):
  """y + D*u, gated by silu(z), zero at masked steps (lengths None: any shape); in y's dtype."""
  if D is not None:
    y = y + D.astype(y.dtype) * u.astype(y.dtype)
  if z is not None:
    y = y * jax.nn.silu(z.astype(y.dtype))
  if lengths is not None:
    y = jnp.where(valid_mask(lengths, y.shape[0], y.shape[1])[..., None], y, 0.0)
  return y
