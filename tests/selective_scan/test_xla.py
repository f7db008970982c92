"""The chunked XLA implementation against the reference: values and every cotangent."""

import jax
import jax.numpy as jnp
import pytest

from mamba_jax_kernels.selective_scan import XlaOptions, xla
from tests.selective_scan.cases import CASES, Case, assert_matches_reference


@pytest.mark.parametrize("strategy", xla.STRATEGIES)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference(name, strategy):
  assert_matches_reference(CASES[name], "xla", XlaOptions(chunk_size=8, strategy=strategy))


@pytest.mark.parametrize("shape", [(8, 2048, 1536, 16), (64, 2049, 32, 8), (1, 65536, 512, 16)])
def test_default_chunk_size_is_the_largest_power_of_two_within_budget(shape):
  batch, length, d_inner, d_state = shape
  chunk = xla.default_chunk_size(*shape)
  state_bytes = 4 * batch * d_inner * d_state
  assert chunk & (chunk - 1) == 0 and 8 <= chunk <= 256
  assert chunk == 8 or chunk * state_bytes <= xla._CHUNK_STATE_BYTES
  assert chunk == 256 or 2 * chunk * state_bytes > xla._CHUNK_STATE_BYTES


def test_default_chunk_size_never_exceeds_the_sequence():
  assert xla.default_chunk_size(1, 5, 4, 2) == 5


def test_backward_does_not_store_per_step_states():
  """The jaxpr of the gradient holds no (batch, length, d_inner, d_state) array."""
  case = Case(batch=2, length=64, d_inner=8, d_state=4, groups=1)
  args = case.arrays()

  def loss(u):
    return jnp.sum(xla.selective_scan_xla(**dict(args, u=u), delta_softplus=True, chunk_size=8)[0])

  jaxpr = jax.make_jaxpr(jax.grad(loss))(args["u"])
  full = (2, 64, 8, 4)
  shapes = [v.aval.shape for eqn in jaxpr.eqns for v in eqn.outvars]
  assert full not in shapes
  assert (8, 2, 8, 4) in [s[-4:] for s in shapes if len(s) >= 4]  # one chunk's states


def test_unknown_strategy_is_refused():
  case = CASES["minimal_d_state_1"]
  with pytest.raises(ValueError, match="strategy='parallel'"):
    xla.selective_scan_xla(**case.arrays(), strategy="parallel")
