"""The op's test grid (`mamba_jax_kernels.selective_scan.testing`, shared with the hardware
self-check) and the assertions built on it."""

import jax.numpy as jnp
import numpy as np

from mamba_jax_kernels.selective_scan.testing import (
  CASES,
  DIFFERENTIABLE,
  TOLERANCES,
  Case,
  run,
  value_and_cotangents,
)

__all__ = [
  "CASES",
  "DIFFERENTIABLE",
  "TOLERANCES",
  "Case",
  "assert_close",
  "assert_matches_reference",
  "run",
  "value_and_cotangents",
]


def assert_close(actual, expected, dtype, what):
  tol = TOLERANCES[jnp.dtype(dtype)]
  np.testing.assert_allclose(
    np.asarray(actual, np.float32), np.asarray(expected, np.float32), err_msg=what, **tol
  )


def assert_matches_reference(case, implementation, options=None):
  """Output, final state and every input's cotangent of `implementation` against the reference's
  on the same inputs, at the case dtype's tolerances."""
  expected_out, expected_grads = value_and_cotangents(case, "reference")
  out, grads = value_and_cotangents(case, implementation, options)
  assert out[0].dtype == case.dtype and out[1].dtype == jnp.float32
  assert_close(out[0], expected_out[0], case.dtype, "output")
  assert_close(out[1], expected_out[1], case.dtype, "final state")
  assert grads.keys() == expected_grads.keys()
  for name, grad in grads.items():
    assert grad.dtype == expected_grads[name].dtype, name
    assert_close(grad, expected_grads[name], case.dtype, f"gradient of {name}")
