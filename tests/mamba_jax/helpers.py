"""Helpers for the mamba_jax tests: tiny configurations and float32 tolerances."""

import numpy as np

from mamba_jax.config import MambaConfig

# mamba_ssm's float32 tolerances (docs/design.md section 2.7).
RTOL, ATOL = 6e-4, 2e-3


def tiny_config(**overrides):
  """A Mamba small enough to compile in seconds: d_model 8, 2 layers, d_state 4."""
  fields = dict(d_model=8, n_layers=2, d_state=4, d_conv=3, expand=2)
  fields.update(overrides)
  return MambaConfig(**fields)


def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
  np.testing.assert_allclose(
    np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=rtol, atol=atol
  )
