"""Both Pallas GPU kernels compiled to SASS for Hopper (sm_90) and Ampere (sm_80) on this CPU
machine, through the Triton IR JAX exports (`gpu_sass.py`): ptxas must accept them with no
spills and few registers. Exported once at the Mamba-130M shape; a handful of compiles."""

import functools

import pytest

from kernels.selective_scan import gpu_sass, pallas_gpu

_MISSING = gpu_sass.triton_wheel_status() or pallas_gpu.triton_status()
pytestmark = [
  pytest.mark.skipif(_MISSING is not None, reason=f"GPU kernels not compiled here: {_MISSING}"),
  pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated"),
]

# Registers per thread: ptxas's count at the shape, with headroom of about a fifth (BUILD_NOTES,
# "SASS per time step"). 255 is the hardware limit; more registers mean fewer co-resident warps.
REGISTER_LIMITS = {"selective_scan_fwd": 80, "selective_scan_bwd": 192}


@functools.cache
def _kernels():
  return gpu_sass.export_kernels()


@functools.cache
def _compiled(name, capability):
  return gpu_sass.compile_kernel(_kernels()[name], capability)


def assert_compiles_lean(compiled, limit):
  assert compiled.spill_bytes == 0, compiled.ptxas_log
  assert compiled.registers <= limit, compiled.ptxas_log


@pytest.mark.parametrize("capability", [90, 80])
@pytest.mark.parametrize("name", sorted(REGISTER_LIMITS))
def test_kernel_compiles_without_spills(name, capability):
  compiled = _compiled(name, capability)
  assert_compiles_lean(compiled, REGISTER_LIMITS[name])
  assert gpu_sass.innermost_loops(compiled.sass), "no time loop found in the SASS"


def test_negative_control_register_cap_forces_spills():
  """The check fails on a kernel that spills: the backward capped at 64 registers."""
  capped = gpu_sass.compile_kernel(_kernels()["selective_scan_bwd"], 90, maxnreg=64)
  with pytest.raises(AssertionError):
    assert_compiles_lean(capped, REGISTER_LIMITS["selective_scan_bwd"])
