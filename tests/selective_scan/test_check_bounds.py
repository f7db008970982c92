"""The self-check's per-case timeout, the bounds its timings are compared with, and its grid on
an accelerator (`check.py`, `testing.py`)."""

import time

import pytest

from mamba_jax_kernels.selective_scan import check, testing


def test_timeout_gives_up_on_a_case_that_does_not_return():
  start = time.perf_counter()
  with pytest.raises(TimeoutError, match="after 0 s"):
    check.with_timeout(lambda: time.sleep(5), 0.2)
  assert time.perf_counter() - start < 2


def test_timeout_passes_results_and_errors_through():
  assert check.with_timeout(lambda: 7, 5) == 7
  with pytest.raises(ZeroDivisionError):
    check.with_timeout(lambda: 1 / 0, 5)


def test_bounds_at_the_first_benchmark_shape():
  """8 x 2048 x 1536 x 16 on an H100: 4.03e8 exps at 4.18e12/s is 0.0963 ms forward, three
  times that forward+backward; the HBM bound is the time at the copy bandwidth."""
  rows = [
    dict(shape="8x2048x1536x16", mode=mode, ms=1.0, of_bound=0.25)
    for mode in ("forward", "fwd+bwd")
  ] + [dict(shape="8x2048x1536x16", error="RuntimeError: failed")]
  check.add_bounds(rows, "NVIDIA H100 80GB HBM3")
  forward, backward, failed = rows
  assert forward["exp_bound_ms"] == pytest.approx(0.0963, rel=1e-3)
  assert backward["exp_bound_ms"] == pytest.approx(3 * forward["exp_bound_ms"])
  assert forward["hbm_bound_ms"] == 0.25 and forward["of_bound_time"] == 0.25
  assert backward["of_bound_time"] == pytest.approx(0.289, rel=1e-2)
  assert "exp_bound_ms" not in failed
  check.add_bounds(other := [dict(shape="1x8x8x4", mode="forward", ms=2.0, of_bound=None)], "cpu")
  assert other[0]["exp_bound_ms"] is None and other[0]["of_bound_time"] is None


def test_accelerators_check_the_production_cases_too():
  assert testing.default_cases("cpu") == testing.CASES
  grid = testing.default_cases("gpu")
  assert set(testing.PRODUCTION_CASES) < set(grid) and set(testing.CASES) < set(grid)
  assert all(
    case.d_inner >= 1536 and case.length > 64 for case in testing.PRODUCTION_CASES.values()
  )
