"""Fixtures for the mamba_jax tests."""

import pytest

from tests.mamba_jax.helpers import tiny_config


@pytest.fixture
def make_config():
  return tiny_config
