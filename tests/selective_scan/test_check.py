"""The hardware self-check on CPU, with interpret mode standing in for the accelerator: it runs
end to end, and it fails an implementation that is wrong, nondeterministic or broken."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax_kernels.selective_scan import api, bench, check, testing

TINY = ["--cases=minimal_d_state_1", "--repeats=1"]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU stand-in run")
def test_command_checks_every_implementation_and_writes_the_report(tmp_path, capsys):
  out = tmp_path / "report.json"
  status = check.main(
    ["--interpret", *TINY, "--dtypes=float32", "--shapes=1x16x8x4", f"--out={out}"]
  )
  printed = capsys.readouterr().out
  report = json.loads(out.read_text())
  names = ["reference", "xla-sequential", "xla-associative", "pallas-interpret"]
  assert status == 0 and list(report["results"]) == names
  for name in names:
    result = report["results"][name]
    assert result["verdict"] == "PASS", (name, result["reason"])
    assert f"PASS {name}: 1/1 grid problems within tolerance" in printed
    (grid,) = result["grid"]
    assert grid["deterministic"] and grid["worst_ratio"] <= 1.0
    assert set(grid["ratios"]) >= {"output", "final state", "gradient of u", "gradient of A"}
  assert report["results"]["pallas-interpret"]["options"]["interpret"]
  timing = report["results"]["xla-sequential"]["timing"]
  assert {row["mode"] for row in timing} == {"forward", "fwd+bwd"}
  assert all(row["ms"] > 0 and row["speedup_vs_best_xla"] <= 1.0 for row in timing)
  assert report["results"]["reference"]["timing"] == []
  assert report["platform"] == "cpu" and report["shapes"] == ["1x16x8x4"]
  assert report["advice"][0].startswith("auto here: xla")
  assert "needs a native run" in report["advice"][1]


def test_pallas_without_interpret_is_skipped_on_cpu():
  (pallas,) = [v for v in check.variants("cpu", interpret=False) if v.name == "pallas"]
  assert "--interpret" in pallas.skip
  assert check.verdict(pallas, [], [])[0] == "SKIP"
  assert [v.name for v in check.variants("gpu", interpret=False)][-1] == "pallas"


def _wrong(u, delta, A, B, C, D, z, delta_bias, options, **kwargs):
  out, state = api._run_xla(u, delta, A, B, C, D, z, delta_bias, options, **kwargs)
  return out * 1.1, state


def _failing(*args, **kwargs):
  raise RuntimeError("Mosaic failed to compile: lane offset not a multiple of 128")


@pytest.mark.parametrize(
  "run,reason",
  [
    (_wrong, "x the tolerance on minimal_d_state_1 bfloat16"),
    (_failing, "error on minimal_d_state_1 bfloat16: RuntimeError: Mosaic failed to compile"),
  ],
)
def test_a_wrong_or_broken_implementation_fails(monkeypatch, tmp_path, run, reason):
  monkeypatch.setitem(api.REGISTRY, "xla", api.Implementation("xla", api.XlaOptions, run, "test"))
  out = tmp_path / "report.json"
  status = check.main(
    [*TINY, "--dtypes=bfloat16", "--shapes=", "--implementations=xla-sequential", f"--out={out}"]
  )
  result = json.loads(out.read_text())["results"]["xla-sequential"]
  assert status == 1 and result["verdict"] == "FAIL" and reason in result["reason"]


def _row(name, mode, ms, shape="8x2048x1536x16"):
  return dict(impl=name, shape=shape, dtype="bfloat16", mode=mode, ms=ms)


def test_speedups_compare_with_the_best_xla_of_each_shape_dtype_and_pass():
  timings = {
    "xla-sequential": [_row("xla-sequential", "forward", 4.0)],
    "xla-associative": [_row("xla-associative", "forward", 2.0)],
    "pallas": [_row("pallas", "forward", 0.5), _row("pallas", "fwd+bwd", 1.0)],
  }
  check.add_speedups(timings)
  assert timings["pallas"][0]["speedup_vs_best_xla"] == 4.0
  assert timings["xla-sequential"][0]["speedup_vs_best_xla"] == 0.5
  assert "speedup_vs_best_xla" not in timings["pallas"][1]  # no xla row to compare with


def test_nondeterministic_or_out_of_tolerance_results_fail():
  variant = check.Variant("pallas", "pallas", api.PallasOptions())
  good = dict(
    case="c", dtype="float32", worst_ratio=0.5, ratios={"output": 0.5}, deterministic=True
  )
  assert check.verdict(variant, [good], [])[0] == "PASS"
  status, reason = check.verdict(variant, [dict(good, deterministic=False)], [])
  assert status == "FAIL" and "not bitwise deterministic" in reason
  status, reason = check.verdict(
    variant, [dict(good, worst_ratio=3.0, ratios={"output": 0.1, "gradient of B": 3.0})], []
  )
  assert status == "FAIL" and "gradient of B off by 3x the tolerance" in reason
  status, reason = check.verdict(
    variant, [good], [dict(shape="1x2x3x4", dtype="float32", error="out of memory")]
  )
  assert status == "FAIL" and "benchmark shape 1x2x3x4" in reason


def test_bitwise_equality_sees_the_last_bit():
  a = {"x": np.float32([1.0, 2.0])}
  assert check._bitwise_equal(a, {"x": np.float32([1.0, 2.0])})
  assert not check._bitwise_equal(a, {"x": np.nextafter(a["x"], np.float32(3.0))})
  assert not check._bitwise_equal(a, {"x": a["x"].astype(jnp.bfloat16)})


def test_advice_proposes_a_table_row_only_from_a_native_benchmark_run():
  target = api.Target("gpu", "NVIDIA H200", (0, 11, 2))
  fast = [dict(_row("pallas", mode, 1.0), speedup_vs_best_xla=2.0) for mode in check.MODES]
  results = {
    "pallas": dict(verdict="PASS", timing=fast),
    "xla-sequential": dict(verdict="PASS", timing=[_row("x", "fwd+bwd", 1.0)]),
    "xla-associative": dict(verdict="PASS", timing=[_row("x", "fwd+bwd", 3.0)]),
  }
  lines = check.advice(target, results, interpret=False, benchmark_shapes=True)
  assert lines[0].startswith("auto here: xla")
  assert any("AutoRule('gpu', ('NVIDIA H200',), ((0, 11, 2)," in line for line in lines)
  assert any("'sequential' strategy is faster" in line for line in lines)
  slow = dict(results, pallas=dict(verdict="PASS", timing=[dict(fast[0], speedup_vs_best_xla=0.9)]))
  assert not any("AutoRule" in line for line in check.advice(target, slow, False, True))
  assert not any("AutoRule" in line for line in check.advice(target, results, True, True))
  assert not any("AutoRule" in line for line in check.advice(target, results, False, False))


def test_timing_shapes_are_cpu_sized_by_default_and_full_on_request():
  assert check.default_preset(False, False, "cpu") == "small"
  assert check.default_preset(False, False, "gpu") == "full"
  assert check.default_preset(False, False, "tpu") == "full"
  assert check.default_preset(False, True, "cpu") == "full"
  assert check.default_preset(True, False, "gpu") == "small"
  kwargs, _ = check.parse_args(["--full"])
  assert kwargs["shapes"] == [bench.parse_shape(s) for s in bench.PRESETS["full"]]
  assert list(kwargs["cases"]) == list(testing.ALL_CASES)  # the production-scale cases too
