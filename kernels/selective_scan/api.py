"""The public selective-scan op: argument checking and dispatch to one implementation.

Semantics are mamba_ssm's `selective_scan_fn` in a channels-last layout (DESIGN.md section 2).
Every implementation receives the same normalised arguments: B and C grouped as
(batch, length, groups, d_state), optional arguments None when absent.
"""

import enum

import jax
import jax.numpy as jnp
import numpy as np

from kernels.selective_scan import pallas_op, reference, xla


class Implementation(str, enum.Enum):
  AUTO = "auto"
  REFERENCE = "reference"
  XLA = "xla"
  PALLAS = "pallas"


# Platforms on which the Pallas kernels compile natively (elsewhere: interpret=True only).
PALLAS_PLATFORMS = ("tpu", "gpu")


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   initial_state=None, lengths=None, return_final_state=False,
                   implementation="auto", *, chunk_size=None, block_d=None, interpret=False,
                   pallas_backend=None, xla_strategy=None):
  """Selective scan h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, y_t = <C_t, h_t> + D u_t.

  Args:
    u, delta: (batch, length, d_inner). z (optional, same shape) gates the output by silu(z).
    A: (d_inner, d_state), real. B, C: (batch, length, d_state) or (batch, length, groups, d_state).
    D, delta_bias: optional (d_inner,). delta_softplus: dt = softplus(delta + delta_bias).
    initial_state: optional (batch, d_inner, d_state). lengths: optional (batch,) int; steps at
      t >= lengths[b] leave the state unchanged and output 0.
    return_final_state: also return the float32 state after the last valid step.
    implementation: "auto" (pallas on TPU/GPU, xla elsewhere), "reference", "xla" or "pallas".
    chunk_size: time steps per chunk (xla and pallas); None picks a default for the shape.
    block_d: channels per Pallas program; None picks a default for the backend.
    interpret: run the Pallas kernel in interpret mode (any platform, including CPU).
    pallas_backend: "tpu" (Mosaic) or "gpu" kernel variant; None follows the platform
      (the TPU variant in interpret mode on CPU).
    xla_strategy: in-chunk scan of the xla implementation, "sequential" or "associative";
      None picks the faster for the platform.

  Returns:
    out (batch, length, d_inner) in u.dtype, and the final state (batch, d_inner, d_state) float32
    when return_final_state.
  """
  B, C = _check_arguments(u, delta, A, B, C, D, z, delta_bias, initial_state, lengths)
  impl = resolve_implementation(implementation, interpret)
  kwargs = dict(delta_softplus=bool(delta_softplus), initial_state=initial_state, lengths=lengths)
  if impl == Implementation.REFERENCE:
    out, state = reference.selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, **kwargs)
  elif impl == Implementation.XLA:
    out, state = xla.selective_scan_xla(u, delta, A, B, C, D, z, delta_bias, **kwargs,
                                        chunk_size=chunk_size, strategy=xla_strategy)
  else:
    out, state = pallas_op.selective_scan_pallas(
        u, delta, A, B, C, D, z, delta_bias, **kwargs, chunk_size=chunk_size, block_d=block_d,
        interpret=interpret, backend=pallas_backend or _default_pallas_backend())
  return (out, state) if return_final_state else out


def resolve_implementation(implementation, interpret=False):
  """Maps "auto" to a concrete implementation; refuses what the platform cannot run."""
  try:
    impl = Implementation(implementation)
  except ValueError:
    raise ValueError(f"selective_scan: implementation={implementation!r}; expected one of "
                     f"{[i.value for i in Implementation]}") from None
  platform = jax.default_backend()
  if impl == Implementation.AUTO:
    return Implementation.PALLAS if platform in PALLAS_PLATFORMS else Implementation.XLA
  if impl == Implementation.PALLAS and platform not in PALLAS_PLATFORMS and not interpret:
    raise ValueError(f"selective_scan: implementation='pallas' cannot compile on platform "
                     f"{platform!r} (Pallas kernels need a TPU or GPU); pass interpret=True to run "
                     f"the kernel in interpret mode, or use implementation='xla'")
  return impl


def _default_pallas_backend():
  return "gpu" if jax.default_backend() == "gpu" else "tpu"


def _shape_error(name, value, expected):
  return ValueError(f"selective_scan: argument '{name}' has shape {tuple(np.shape(value))}; "
                    f"expected {expected}")


def _check_float(name, value):
  dtype = jnp.result_type(value)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"selective_scan: argument '{name}' has dtype {dtype}; expected a real "
                     f"floating dtype (float32, bfloat16, float16 or float64)")


def _check_arguments(u, delta, A, B, C, D, z, delta_bias, initial_state, lengths):
  """Validates shapes and dtypes; returns B and C in the grouped 4-d layout."""
  if np.ndim(u) != 3:
    raise _shape_error("u", u, "(batch, length, d_inner)")
  batch, length, d_inner = np.shape(u)
  for name, value in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D),
                      ("z", z), ("delta_bias", delta_bias), ("initial_state", initial_state)):
    if value is not None:
      _check_float(name, value)
  if np.shape(delta) != (batch, length, d_inner):
    raise _shape_error("delta", delta, f"(batch, length, d_inner) = {(batch, length, d_inner)}")
  if z is not None and np.shape(z) != (batch, length, d_inner):
    raise _shape_error("z", z, f"(batch, length, d_inner) = {(batch, length, d_inner)}")
  if np.ndim(A) != 2 or np.shape(A)[0] != d_inner:
    raise _shape_error("A", A, f"(d_inner, d_state) with d_inner = {d_inner}")
  d_state = np.shape(A)[1]
  grouped = []
  for name, value in (("B", B), ("C", C)):
    if np.ndim(value) == 3:
      value = value[:, :, None, :]
    if (np.ndim(value) != 4 or np.shape(value)[:2] != (batch, length)
        or np.shape(value)[3] != d_state):
      raise _shape_error(name, value, f"(batch, length, d_state) = {(batch, length, d_state)} or "
                                      f"(batch, length, groups, d_state)")
    grouped.append(value)
  B, C = grouped
  if np.shape(B) != np.shape(C):
    raise _shape_error("C", C, f"the shape of B, {tuple(np.shape(B))}")
  groups = np.shape(B)[2]
  if groups < 1 or d_inner % groups:
    raise _shape_error("B", B, f"groups (axis 2) dividing d_inner = {d_inner}")
  for name, value in (("D", D), ("delta_bias", delta_bias)):
    if value is not None and np.shape(value) != (d_inner,):
      raise _shape_error(name, value, f"(d_inner,) = {(d_inner,)}")
  if initial_state is not None and np.shape(initial_state) != (batch, d_inner, d_state):
    raise _shape_error("initial_state", initial_state,
                       f"(batch, d_inner, d_state) = {(batch, d_inner, d_state)}")
  if lengths is not None:
    if np.shape(lengths) != (batch,):
      raise _shape_error("lengths", lengths, f"(batch,) = {(batch,)}")
    if not jnp.issubdtype(jnp.result_type(lengths), jnp.integer):
      raise ValueError(f"selective_scan: argument 'lengths' has dtype {jnp.result_type(lengths)}; "
                       f"expected an integer dtype")
    if not isinstance(lengths, jax.core.Tracer):
      concrete = np.asarray(lengths)
      if concrete.size and (concrete.min() < 0 or concrete.max() > length):
        raise ValueError(f"selective_scan: argument 'lengths' has values in "
                         f"[{concrete.min()}, {concrete.max()}]; expected 0 <= lengths <= "
                         f"length = {length}")
  return B, C
