"""Argument checks of the public ops, before any implementation sees the arrays.

Each error names the op, the argument, its shape or dtype and what was expected, so that a
mistake fails at the call and not deep inside a trace. B and C come back in the grouped layout
every implementation takes: (..., groups, d_state).
"""

import jax.numpy as jnp
import numpy as np
from jax.core import Tracer


def _shape_error(op, name, value, expected):
  return ValueError(
    f"{op}: argument '{name}' has shape {tuple(np.shape(value))}; expected {expected}"
  )


def _check_floats(op, named_values):
  for name, value in named_values:
    if value is None:
      continue
    dtype = jnp.result_type(value)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(
        f"{op}: argument '{name}' has dtype {dtype}; expected a real floating "
        f"dtype (float32, bfloat16, float16 or float64)"
      )


def _grouped(op, B, C, lead, d_state, d_inner):
  """B and C as (*lead, groups, d_state); lead is (batch, length) or (batch,)."""
  lead_names = ", ".join(("batch", "length")[: len(lead)])
  grouped = []
  for name, value in (("B", B), ("C", C)):
    if np.ndim(value) == len(lead) + 1:
      value = jnp.expand_dims(value, len(lead))
    if (
      np.ndim(value) != len(lead) + 2
      or np.shape(value)[: len(lead)] != lead
      or np.shape(value)[-1] != d_state
    ):
      raise _shape_error(
        op,
        name,
        value,
        f"({lead_names}, d_state) = {lead + (d_state,)} or ({lead_names}, groups, d_state)",
      )
    grouped.append(value)
  B, C = grouped
  if np.shape(B) != np.shape(C):
    raise _shape_error(op, "C", C, f"the shape of B, {tuple(np.shape(B))}")
  groups = np.shape(B)[-2]
  if groups < 1 or d_inner % groups:
    raise _shape_error(op, "B", B, f"groups (axis {len(lead)}) dividing d_inner = {d_inner}")
  return B, C


def _check_A(op, A, d_inner):
  if np.ndim(A) != 2 or np.shape(A)[0] != d_inner:
    raise _shape_error(op, "A", A, f"(d_inner, d_state) with d_inner = {d_inner}")
  return np.shape(A)[1]


def _check_channels(op, d_inner, named_values):
  for name, value in named_values:
    if value is not None and np.shape(value) != (d_inner,):
      raise _shape_error(op, name, value, f"(d_inner,) = {(d_inner,)}")


def check_scan(u, delta, A, B, C, D, z, delta_bias, initial_state, lengths):
  """Validates `selective_scan`'s arguments; returns B and C as (batch, length, groups, d_state)."""
  op = "selective_scan"
  if np.ndim(u) != 3:
    raise _shape_error(op, "u", u, "(batch, length, d_inner)")
  batch, length, d_inner = np.shape(u)
  _check_floats(
    op,
    (
      ("u", u),
      ("delta", delta),
      ("A", A),
      ("B", B),
      ("C", C),
      ("D", D),
      ("z", z),
      ("delta_bias", delta_bias),
      ("initial_state", initial_state),
    ),
  )
  for name, value in (("delta", delta), ("z", z)):
    if value is not None and np.shape(value) != (batch, length, d_inner):
      raise _shape_error(op, name, value, f"(batch, length, d_inner) = {(batch, length, d_inner)}")
  d_state = _check_A(op, A, d_inner)
  B, C = _grouped(op, B, C, (batch, length), d_state, d_inner)
  _check_channels(op, d_inner, (("D", D), ("delta_bias", delta_bias)))
  if initial_state is not None and np.shape(initial_state) != (batch, d_inner, d_state):
    raise _shape_error(
      op, "initial_state", initial_state, f"(batch, d_inner, d_state) = {(batch, d_inner, d_state)}"
    )
  if lengths is not None:
    _check_lengths(op, lengths, batch, length)
  return B, C


def _check_lengths(op, lengths, batch, length):
  if np.shape(lengths) != (batch,):
    raise _shape_error(op, "lengths", lengths, f"(batch,) = {(batch,)}")
  if not jnp.issubdtype(jnp.result_type(lengths), jnp.integer):
    raise ValueError(
      f"{op}: argument 'lengths' has dtype {jnp.result_type(lengths)}; expected an integer dtype"
    )
  if not isinstance(lengths, Tracer):
    concrete = np.asarray(lengths)
    if concrete.size and (concrete.min() < 0 or concrete.max() > length):
      raise ValueError(
        f"{op}: argument 'lengths' has values in [{concrete.min()}, "
        f"{concrete.max()}]; expected 0 <= lengths <= length = {length}"
      )


def check_step(state, u, delta, A, B, C, D, z, delta_bias):
  """Validates `selective_scan_step`'s arguments; returns B and C as (batch, groups, d_state)."""
  op = "selective_scan_step"
  if np.ndim(u) != 2:
    raise _shape_error(op, "u", u, "(batch, d_inner)")
  batch, d_inner = np.shape(u)
  _check_floats(
    op,
    (
      ("state", state),
      ("u", u),
      ("delta", delta),
      ("A", A),
      ("B", B),
      ("C", C),
      ("D", D),
      ("z", z),
      ("delta_bias", delta_bias),
    ),
  )
  for name, value in (("delta", delta), ("z", z)):
    if value is not None and np.shape(value) != (batch, d_inner):
      raise _shape_error(op, name, value, f"(batch, d_inner) = {(batch, d_inner)}")
  d_state = _check_A(op, A, d_inner)
  if np.shape(state) != (batch, d_inner, d_state):
    raise _shape_error(
      op, "state", state, f"(batch, d_inner, d_state) = {(batch, d_inner, d_state)}"
    )
  B, C = _grouped(op, B, C, (batch,), d_state, d_inner)
  _check_channels(op, d_inner, (("D", D), ("delta_bias", delta_bias)))
  return B, C
