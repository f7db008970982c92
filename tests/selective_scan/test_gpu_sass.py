"""Both Pallas GPU kernels compiled to SASS for Hopper (sm_90) and Ampere (sm_80) on this CPU
machine, through the Triton IR JAX exports (`gpu_sass.py`): ptxas must accept them with no
spills and few registers. Exported once at the Mamba-130M shape; a handful of compiles."""

import functools

import pytest

from mamba_jax_kernels.selective_scan import gpu_sass, pallas_gpu

_MISSING = gpu_sass.triton_wheel_status() or pallas_gpu.triton_status()
pytestmark = [
  pytest.mark.skipif(_MISSING is not None, reason=f"GPU kernels not compiled here: {_MISSING}"),
  pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated"),
]

# Registers per thread: ptxas's count at the shape (142 and 247 on sm_90, BUILD_NOTES "SASS per
# time step") with a little headroom; 255 is the hardware's limit, past it ptxas spills.
REGISTER_LIMITS = {"selective_scan_fwd": 160, "selective_scan_bwd": 250}


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


def test_forward_time_step_is_lean():
  """Hopper SASS of the forward's time loop: at most 250 instructions, no barrier, no shuffle."""
  [loop] = gpu_sass.innermost_loops(_compiled("selective_scan_fwd", 90).sass)
  figures = loop.figures()
  assert figures["instructions"] <= 250 and figures["barriers"] == 0, figures
  assert figures["shuffles"] == 0, figures


def test_backward_time_steps_do_not_grow():
  """Hopper SASS of the backward's recompute and reverse loops stay at or under what they were
  measured at (192 and 818 instructions, 1 and 10 barriers) plus a few percent: the issue's
  targets (500 and 2) are not met yet, and a change that moves away from them should show."""
  recompute, reverse = gpu_sass.innermost_loops(_compiled("selective_scan_bwd", 90).sass)
  assert recompute.figures()["instructions"] <= 200, recompute.figures()
  assert reverse.figures()["instructions"] <= 850 and reverse.figures()["barriers"] <= 10
