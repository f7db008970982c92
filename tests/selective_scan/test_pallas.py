"""The Pallas kernels against the reference, and their lowering for real TPUs and GPUs."""

import jax
import jax.numpy as jnp
import pytest

from kernels.selective_scan import pallas_op
from tests.selective_scan.cases import CASES, Case, assert_matches_reference
from tests.selective_scan.implementations import FAST

PALLAS = [p for p in FAST if p.values[0] == "pallas"]


@pytest.mark.parametrize("implementation,options", PALLAS)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference(name, implementation, options):
  assert_matches_reference(CASES[name], implementation, **options)


@pytest.mark.parametrize("backend", ["tpu", "gpu"])
def test_default_blocks_match_reference(backend):
  """Default chunk and block sizes (one chunk for short sequences, padded channel blocks)."""
  assert_matches_reference(Case(length=70, d_inner=20, groups=2, lengths=(70, 3, 50)), "pallas",
                           interpret=True, pallas_backend=backend)


def _gradient_of_scan(backend):
  def loss(u, delta, A, B, C, D, z, bias, lengths):
    out, _ = pallas_op.selective_scan_pallas(u, delta, A, B[:, :, None], C[:, :, None], D, z,
                                             bias, delta_softplus=True, lengths=lengths,
                                             backend=backend)
    return jnp.sum(out.astype(jnp.float32))
  return jax.jit(jax.grad(loss, argnums=tuple(range(8))))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("backend,platform", [("tpu", "tpu"), ("gpu", "cuda")])
def test_forward_and_backward_lower_for_the_accelerator(backend, platform, dtype):
  """Lowers both kernels for a real TPU (Mosaic) or GPU (Triton) from this CPU machine.

  This runs Pallas's own lowering (block shapes, memory spaces, ops the backend supports);
  the backend compiler and execution are checked only where the hardware is present.
  """
  b, l, d, n = 2, 300, 256, 16
  rows = jax.ShapeDtypeStruct((b, l, d), dtype)
  columns = jax.ShapeDtypeStruct((b, l, n), dtype)
  channels = jax.ShapeDtypeStruct((d,), jnp.float32)
  args = (rows, rows, jax.ShapeDtypeStruct((d, n), jnp.float32), columns, columns, channels, rows,
          channels, jax.ShapeDtypeStruct((b,), jnp.int32))
  exported = jax.export.export(
      _gradient_of_scan(backend), platforms=[platform],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")])(*args)
  module = exported.mlir_module()
  assert module.count("selective_scan_fwd") >= 1 and module.count("selective_scan_bwd") >= 1


def test_unknown_backend_is_refused():
  with pytest.raises(ValueError, match="pallas_backend"):
    pallas_op.selective_scan_pallas(**CASES["minimal_d_state_1"].arrays()
                                    | dict(B=jnp.zeros((1, 16, 1, 1)), C=jnp.zeros((1, 16, 1, 1))),
                                    backend="cuda")
