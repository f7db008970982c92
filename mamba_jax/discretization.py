"""How the SSM step size delta_t is formed: "fixed" (Mamba) or "length_adaptive" (docs/design.md,
the discretisations).

fixed:            delta_t = softplus(dt_proj(x_t) + bias)
length_adaptive:  delta_t = softplus(dt_proj(x_t) + bias) * (L / L_ref) ** (-alpha)

alpha is a learned per-channel exponent initialised to 0, so a fresh length-adaptive model equals
the fixed one. The fixed path hands the raw dt and the bias to the scan op, which applies softplus
itself (as mamba_ssm does); the length-adaptive path must scale after softplus, so it applies the
op's own softplus here and calls the op with delta_softplus=False.
"""

from typing import TypedDict

import jax
import jax.numpy as jnp
from flax import nnx

from mamba_jax_kernels.selective_scan import softplus


def resolve_sequence_length(sequence_length, lengths, batch, padded_length, left_pad=None):
  """The L of the length-adaptive step, float32 (batch,): sequence_length if given (scalar or
  per example), else the valid lengths, else the padded length; minus any left padding."""
  if sequence_length is None:
    sequence_length = lengths if lengths is not None else padded_length
    if left_pad is not None:
      sequence_length = sequence_length - left_pad
  return jnp.broadcast_to(jnp.asarray(sequence_length, jnp.float32), (batch,))


class ScanStepArguments(TypedDict):
  """The step-size arguments of `selective_scan`."""

  delta: jax.Array  # (batch, length, d_inner)
  delta_bias: jax.Array | None  # (d_inner,)
  delta_softplus: bool


class Discretization(nnx.Module):
  """Turns the projected dt into the scan op's step arguments; owns alpha when length-adaptive."""

  def __init__(self, config):
    self.adaptive = config.discretization == "length_adaptive"
    self.length_ref = config.length_ref
    self.alpha = nnx.Param(jnp.zeros((config.d_inner,), jnp.float32)) if self.adaptive else None

  def length_scale(self, sequence_length):
    """(L / L_ref) ** (-alpha): (batch, d_inner) float32. L below 1 counts as 1 (empty inputs)."""
    if self.alpha is None:
      raise ValueError("only the length_adaptive discretization scales the step by the length")
    ratio = jnp.maximum(sequence_length.astype(jnp.float32), 1.0) / self.length_ref
    return jnp.exp(-self.alpha[...][None, :] * jnp.log(ratio)[:, None])

  def scan_arguments(self, dt, dt_bias, sequence_length=None, valid=None) -> ScanStepArguments:
    """Arguments delta, delta_bias, delta_softplus of `selective_scan` for dt (batch, length, d).

    valid: optional (batch, length) bool; the step is 0 where False (left padding), so those
    steps leave the state unchanged.
    """
    if valid is not None:
      delta = self.step_size(dt, dt_bias, sequence_length) * valid[..., None]
      return ScanStepArguments(delta=delta, delta_bias=None, delta_softplus=False)
    if not self.adaptive:
      return ScanStepArguments(delta=dt, delta_bias=dt_bias, delta_softplus=True)
    return ScanStepArguments(
      delta=self.step_size(dt, dt_bias, sequence_length), delta_bias=None, delta_softplus=False
    )

  def step_size(self, dt, dt_bias, sequence_length=None):
    """delta itself, float32, for dt of shape (batch, ..., d_inner)."""
    delta = softplus(dt.astype(jnp.float32) + dt_bias.astype(jnp.float32))
    if not self.adaptive:
      return delta
    if sequence_length is None:
      raise ValueError("length_adaptive discretization needs the sequence length L")
    scale = self.length_scale(sequence_length)
    return delta * scale.reshape(scale.shape[:1] + (1,) * (delta.ndim - 2) + scale.shape[1:])


def valid_after_left_pad(left_pad, batch, length):
  """(batch, length) bool, False at the first left_pad[b] positions; None when no left_pad."""
  if left_pad is None:
    return None
  left_pad = jnp.broadcast_to(jnp.asarray(left_pad, jnp.int32), (batch,))
  return jnp.arange(length)[None, :] >= left_pad[:, None]
