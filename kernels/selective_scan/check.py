r"""Hardware self-check of the selective-scan op:
`python -m mamba_jax_kernels.selective_scan.check`.

Run it first on any new accelerator, JAX version or kernel change. On the default device it
  1. compiles every implementation (reference, xla with each in-chunk strategy, pallas) and
     compares each with the reference on the test grid (`testing.CASES`, and on a GPU or TPU
     `testing.PRODUCTION_CASES`: several channel blocks and chunks at the launch table's
     settings) in float32 and bfloat16: output, final state and the gradient of every input,
     at the tolerances of docs/design.md; each case has CASE_TIMEOUT_S;
  2. runs each compiled forward+backward 3 times and requires bitwise-identical results
     (deterministic gradients: no atomics, no unordered reductions);
  3. times forward and forward+backward at the benchmark shapes (`bench.py`'s, and its timing)
     against the best xla strategy and against the shape's bounds: HBM (minimal bytes at a copy
     bandwidth measured on 256 MiB, past the L2) and the exp unit (`add_bounds`);
then prints one verdict line per implementation (PASS, FAIL or SKIP and why), says what `auto`
picks here and whether AUTO_TABLE should change, and writes everything as JSON (--out).
The exit status is 1 when any implementation fails.

Pallas compiles natively on TPU and GPU only; elsewhere it is skipped unless --interpret, which
runs it in interpret mode (a stand-in for the accelerator: checks the kernel's logic, not its
compilation or speed). Examples:
  python -m mamba_jax_kernels.selective_scan.check --out=check_h200.json  # under 5 min on a chip
  python -m mamba_jax_kernels.selective_scan.check --quick                # small timing shapes
  python -m mamba_jax_kernels.selective_scan.check --interpret --quick    # CPU: interpreted
On a CPU the default times at the small shapes and checks the test grid (the full shapes alone
take over 12 minutes there); --full checks the production-scale cases too and times at bench.py's
full shapes, on any platform.
"""

import argparse
import dataclasses
import json
import math
import sys
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mamba_jax_kernels.selective_scan import api, bench, testing, xla
from mamba_jax_kernels.selective_scan.options import Options

DTYPES = ("float32", "bfloat16")
DETERMINISM_RUNS = 3
MODES = ("forward", "fwd+bwd")


@dataclasses.dataclass
class Variant:
  """One implementation as checked: its label, the op's implementation name and options."""

  name: str
  implementation: str
  options: Options
  skip: str | None = None  # why it cannot run here
  timed: bool = True


def variants(platform, interpret):
  """reference, xla with each strategy, and pallas (interpreted, native or skipped)."""
  found = [Variant("reference", "reference", None, timed=False)]
  found += [
    Variant(f"xla-{strategy}", *bench.variant(f"xla-{strategy}")) for strategy in xla.STRATEGIES
  ]
  if interpret:
    found.append(Variant("pallas-interpret", *bench.variant("pallas", interpret=True)))
  elif platform in api.PALLAS_PLATFORMS:
    found.append(Variant("pallas", *bench.variant("pallas")))
  else:
    found.append(
      Variant(
        "pallas",
        "pallas",
        None,
        skip=f"Pallas does not compile on {platform}; --interpret runs it in interpret mode",
      )
    )
  return found


def _bitwise_equal(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(leaves_a) == len(leaves_b) and all(
    x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
    for x, y in zip(leaves_a, leaves_b)
  )


def _compiled_runs(case, implementation, options, runs):
  """Compiles the case's forward+VJP once and runs it `runs` times, results on the host."""
  f, args = testing.vjp_function(case, implementation, options)
  compiled = jax.jit(f).lower(*args).compile()
  return [jax.tree.map(np.asarray, jax.device_get(compiled(*args))) for _ in range(runs)]


def _error(exc):
  """An exception as one line: its type and the first line of its message, shortened."""
  message = str(exc).strip().splitlines()
  return f"{type(exc).__name__}: {message[0] if message else ''}"[:300]


# ---------------------------------------------------------------------------------------------
# Per-case timeout and the arithmetic bounds the timings are compared with.

CASE_TIMEOUT_S = 600.0
# Exponentials per second: SMs x 16 MUFU ex2 per clock x boost clock (BUILD_NOTES, "Kernel
# goals"); devices not listed get no exp bound.
EXP_RATE = {"NVIDIA H100 80GB HBM3": 132 * 16 * 1.98e9, "NVIDIA H200": 132 * 16 * 1.98e9}


def with_timeout(fn, seconds):
  """fn() in a worker thread; TimeoutError when it has not returned after `seconds` (the thread
  is left running: a hung kernel cannot be interrupted, but the check goes on and says so)."""
  result = {}

  def target():
    try:
      result["value"] = fn()
    except Exception as exc:  # noqa: BLE001 (re-raised in the caller's thread)
      result["error"] = exc

  worker = threading.Thread(target=target, daemon=True)
  worker.start()
  worker.join(seconds)
  if worker.is_alive():
    raise TimeoutError(f"no result after {seconds:.0f} s")
  if "error" in result:
    raise result["error"]
  return result["value"]


def add_bounds(rows, device_kind):
  """Adds to each timing row the HBM bound (its minimal bytes at the measured copy bandwidth)
  and the exp-unit bound (B L D N exps forward, 3x that forward+backward: the backward
  recomputes them twice), in ms, and the time's ratio to the larger."""
  for row in rows:
    if "ms" not in row:
      continue
    batch, length, d_inner, d_state = bench.parse_shape(row["shape"])
    exps = batch * length * d_inner * d_state * (1 if row["mode"] == "forward" else 3)
    rate = EXP_RATE.get(device_kind)
    row["hbm_bound_ms"] = None if row["of_bound"] is None else row["ms"] * row["of_bound"]
    row["exp_bound_ms"] = None if rate is None else exps / rate * 1e3
    bounds = [b for b in (row["hbm_bound_ms"], row["exp_bound_ms"]) if b is not None]
    row["of_bound_time"] = max(bounds) / row["ms"] if bounds else None


def check_grid(variant, cases, dtypes, expected, timeout=CASE_TIMEOUT_S):
  """Grid results of one variant: per (case, dtype) the worst ratio to the tolerance per
  quantity, and whether DETERMINISM_RUNS runs agreed bitwise."""
  results = []
  for case_name, case in cases.items():
    for dtype in dtypes:
      entry = dict(case=case_name, dtype=dtype)
      try:
        runs = with_timeout(
          lambda: _compiled_runs(
            dataclasses.replace(case, dtype=jnp.dtype(dtype)),  # noqa: B023 (called at once)
            variant.implementation,
            variant.options,
            DETERMINISM_RUNS,
          ),
          timeout,
        )
      except Exception as exc:  # noqa: BLE001 (a compile or runtime failure is a result)
        results.append(dict(entry, error=_error(exc), passed=False))
        continue
      ratios = testing.comparisons(runs[0], expected[case_name, dtype])
      deterministic = all(_bitwise_equal(run, runs[0]) for run in runs[1:])
      worst = max(ratios.values())
      results.append(
        dict(
          entry,
          worst_ratio=worst,
          ratios=ratios,
          deterministic=deterministic,
          passed=bool(worst <= 1.0 and deterministic),
        )
      )
  return results


def time_variant(variant, shapes, dtypes, repeats, bound, timeout=CASE_TIMEOUT_S):
  """bench.measure rows (forward and fwd+bwd) at each shape and dtype; failures as rows."""
  rows = []
  for shape in shapes:
    for dtype in dtypes:
      try:
        rows += with_timeout(
          lambda: bench.measure(
            variant.name,
            variant.implementation,
            variant.options,
            shape,  # noqa: B023 (called at once)
            jnp.dtype(dtype),  # noqa: B023
            repeats,
            bound,
          ),
          timeout,
        )
      except Exception as exc:  # noqa: BLE001 (a failure at a benchmark shape is a result)
        rows.append(
          dict(impl=variant.name, shape="x".join(map(str, shape)), dtype=dtype, error=_error(exc))
        )
  return rows


def add_speedups(timings):
  """Adds to each timing row speedup = best xla time / its time, at the same shape, dtype, pass."""
  best = {}
  for name, rows in timings.items():
    if name.startswith("xla"):
      for row in rows:
        if "ms" in row:
          key = (row["shape"], row["dtype"], row["mode"])
          best[key] = min(best.get(key, math.inf), row["ms"])
  for rows in timings.values():
    for row in rows:
      key = (row.get("shape"), row.get("dtype"), row.get("mode"))
      if "ms" in row and key in best:
        row["best_xla_ms"] = best[key]
        row["speedup_vs_best_xla"] = best[key] / row["ms"]


def _speed_summary(rows):
  parts = []
  for mode in MODES:
    speedups = [
      r["speedup_vs_best_xla"] for r in rows if r.get("mode") == mode and "speedup_vs_best_xla" in r
    ]
    if speedups:
      parts.append(f"{mode} {min(speedups):.2f}x-{max(speedups):.2f}x")
  return "vs best xla: " + ", ".join(parts) if parts else ""


def verdict(variant, grid, rows):
  """(PASS / FAIL / SKIP, the reason in one line)."""
  if variant.skip:
    return "SKIP", variant.skip
  reasons = []
  errors = [r for r in grid if "error" in r]
  if errors:
    reasons.append(f"error on {errors[0]['case']} {errors[0]['dtype']}: {errors[0]['error']}")
  wrong = [r for r in grid if "error" not in r and r["worst_ratio"] > 1.0]
  for r in wrong[:2]:
    quantity = max(r["ratios"], key=r["ratios"].get)
    reasons.append(
      f"{quantity} off by {r['worst_ratio']:.3g}x the tolerance on {r['case']} {r['dtype']}"
    )
  unstable = [r for r in grid if "error" not in r and not r["deterministic"]]
  if unstable:
    reasons.append(
      f"not bitwise deterministic over {DETERMINISM_RUNS} runs on "
      f"{unstable[0]['case']} {unstable[0]['dtype']}"
    )
  failed_timings = [r for r in rows if "error" in r]
  if failed_timings:
    r = failed_timings[0]
    reasons.append(f"failed at benchmark shape {r['shape']} {r['dtype']}: {r['error']}")
  if reasons:
    return "FAIL", "; ".join(reasons)
  worst = max((r["worst_ratio"] for r in grid), default=0.0)
  summary = (
    f"{len(grid)}/{len(grid)} grid problems within tolerance (worst {worst:.2f} of it), "
    f"gradients bitwise deterministic"
  )
  speed = _speed_summary(rows) if variant.timed else "not timed (the ground truth)"
  return "PASS", f"{summary}; {speed}" if speed else summary


def advice(target, results, interpret, benchmark_shapes):
  """Lines on what auto picks here and, from timings at the benchmark shapes of a native run,
  what AUTO_TABLE or xla.default_strategy should say."""
  name, options, rule = api.auto_choice(target)
  lines = [
    f"auto here: {name} {options} "
    + (f"(AUTO_TABLE row: {rule.evidence})" if rule else "(no AUTO_TABLE row matches)")
  ]
  if interpret or not benchmark_shapes:
    lines.append(
      "no advice on AUTO_TABLE: it needs a native run (no --interpret) timed at "
      "bench.py's full shapes (no --quick, no --shapes)"
    )
    return lines
  passed = {n: r for n, r in results.items() if r["verdict"] == "PASS"}

  def faster_everywhere(rows):
    speedups = [r.get("speedup_vs_best_xla") for r in rows]
    return bool(speedups) and all(s is not None and s > 1.0 for s in speedups)

  if "pallas" in passed and faster_everywhere(passed["pallas"]["timing"]):
    lines.append(
      "pallas passed and beats the best xla at every benchmark shape and pass. To let auto "
      "pick it, add to AUTO_TABLE in kernels/selective_scan/api.py: "
      f"AutoRule({target.platform!r}, ({target.device_kind!r},), ({target.jax_version}, "
      f"<first JAX version not checked>), 'pallas', PallasOptions(), evidence='<date>, "
      f"<machine>, python -m mamba_jax_kernels.selective_scan.check: <this report>')"
    )
  strategies = {}
  for n, r in passed.items():
    if n.startswith("xla-"):
      forward_backward = [row["ms"] for row in r["timing"] if row.get("mode") == "fwd+bwd"]
      if forward_backward:
        strategies[n.partition("-")[2]] = sum(map(math.log, forward_backward))
  if len(strategies) > 1:
    fastest = min(strategies, key=lambda strategy: strategies[strategy])
    if fastest != xla.default_strategy(target.platform):
      lines.append(
        f"xla's {fastest!r} strategy is faster here (geometric mean fwd+bwd) than "
        f"xla.default_strategy({target.platform!r}) = "
        f"{xla.default_strategy(target.platform)!r}: consider changing it"
      )
  return lines


def run_check(cases, dtypes, shapes, repeats, interpret, names=None, log=print) -> dict[str, Any]:
  """The whole check; returns the report as a dict."""
  start = time.perf_counter()
  target = api.current_target()
  found = variants(target.platform, interpret)
  if names:
    unknown = set(names) - {v.name for v in found}
    if unknown:
      raise ValueError(
        f"unknown implementations {sorted(unknown)}; this run has {[v.name for v in found]}"
      )
    found = [v for v in found if v.name in names]
  log(
    f"# selective_scan self-check: JAX {jax.__version__}, {target.platform} "
    f"({target.device_kind}), {len(cases)} grid problems x {len(dtypes)} dtypes, timing at "
    f"{', '.join('x'.join(map(str, s)) for s in shapes)}"
  )
  expected = {}
  for case_name, case in cases.items():
    for dtype in dtypes:
      expected[case_name, dtype] = _compiled_runs(
        dataclasses.replace(case, dtype=jnp.dtype(dtype)), "reference", None, 1
      )[0]
  # 256 MiB: past any L2 (50 MB on an H100), so the probe measures HBM, not cache.
  bound = bench.copy_bandwidth(repeats=max(repeats, 1), n_bytes=1 << 28) if shapes else None
  grids, timings = {}, {}
  for variant in found:
    if variant.skip:
      grids[variant.name], timings[variant.name] = [], []
      continue
    grids[variant.name] = check_grid(variant, cases, dtypes, expected)
    timings[variant.name] = (
      time_variant(variant, shapes, dtypes, repeats, bound) if variant.timed else []
    )
    log(f"  checked {variant.name} ({time.perf_counter() - start:.0f} s)", flush=True)
  add_speedups(timings)
  for rows in timings.values():
    add_bounds(rows, target.device_kind)
  results = {}
  for variant in found:
    status, reason = verdict(variant, grids[variant.name], timings[variant.name])
    results[variant.name] = dict(
      verdict=status,
      reason=reason,
      implementation=variant.implementation,
      options=None if variant.options is None else dataclasses.asdict(variant.options),
      grid=grids[variant.name],
      timing=timings[variant.name],
    )
  report: dict[str, Any] = dict(
    date=time.strftime("%Y-%m-%d %H:%M:%S"),
    jax_version=jax.__version__,
    python=sys.version.split()[0],
    platform=target.platform,
    device_kind=target.device_kind,
    device_count=jax.device_count(),
    interpret=interpret,
    copy_bandwidth_gbps=(None if bound is None else bound / 1e9),
    cases=list(cases),
    dtypes=list(dtypes),
    shapes=["x".join(map(str, s)) for s in shapes],
    repeats=repeats,
    results=results,
  )
  benchmark_shapes = [bench.parse_shape(s) for s in bench.PRESETS["full"]]
  report["advice"] = advice(target, results, interpret, list(shapes) == benchmark_shapes)
  report["elapsed_s"] = time.perf_counter() - start
  return report


def format_verdicts(report):
  lines = [f"{r['verdict']:4} {name}: {r['reason']}" for name, r in report["results"].items()]
  return "\n".join(lines + report["advice"] + [f"({report['elapsed_s']:.0f} s)"])


def default_preset(quick, full, platform=None):
  """bench.py's preset that a run times at: --quick small and --full full anywhere; otherwise
  full on an accelerator and small on a CPU, where the full shapes alone take over 12 minutes."""
  if quick or full:
    return "small" if quick else "full"
  return "small" if (platform or jax.default_backend()) == "cpu" else "full"


def parse_args(argv):
  parser = argparse.ArgumentParser(
    prog="python -m mamba_jax_kernels.selective_scan.check",
    description=(__doc__ or "").split("\n\n")[0],
  )
  parser.add_argument("--out", default="selective_scan_check.json", help="JSON report path.")
  parser.add_argument(
    "--interpret",
    action="store_true",
    help="Run Pallas in interpret mode (any platform; CPU stand-in).",
  )
  parser.add_argument(
    "--quick",
    action="store_true",
    help=f"Time at bench.py's small shapes {bench.PRESETS['small']}.",
  )
  parser.add_argument(
    "--full",
    action="store_true",
    help=f"Time at bench.py's full shapes {bench.PRESETS['full']} (the default on TPU and "
    "GPU; on a CPU the default is --quick's small shapes).",
  )
  parser.add_argument(
    "--shapes",
    default=None,
    help="Timing shapes BxLxDxN, comma-separated (overrides --quick and --full); empty: no timing.",
  )
  parser.add_argument(
    "--cases",
    default=None,
    help="Grid problems to check, comma-separated (default: the test grid, and with --full or "
    "on a GPU or TPU the production-scale cases too).",
  )
  parser.add_argument("--dtypes", default=",".join(DTYPES), help="Comma-separated dtypes.")
  parser.add_argument(
    "--implementations",
    default="",
    help="Subset of reference, xla-sequential, xla-associative, pallas, "
    "pallas-interpret (default: all).",
  )
  parser.add_argument("--repeats", type=int, default=3, help="Timed runs (median reported).")
  args = parser.parse_args(argv)
  split = lambda text: [item for item in text.split(",") if item]
  if args.quick and args.full:
    parser.error("--quick and --full are exclusive")
  if args.shapes is None:
    args.shapes = ",".join(bench.PRESETS[default_preset(args.quick, args.full)])
  if args.cases is None:
    grid = testing.ALL_CASES if args.full else testing.default_cases(jax.default_backend())
    args.cases = ",".join(grid)
  unknown = set(split(args.cases)) - set(testing.ALL_CASES)
  if unknown:
    parser.error(f"unknown cases {sorted(unknown)}; the grid has {list(testing.ALL_CASES)}")
  return dict(
    cases={name: testing.ALL_CASES[name] for name in split(args.cases)},
    dtypes=split(args.dtypes),
    shapes=[bench.parse_shape(s) for s in split(args.shapes)],
    repeats=args.repeats,
    interpret=args.interpret,
    names=split(args.implementations),
  ), args.out


def main(argv=None):
  kwargs, out = parse_args(sys.argv[1:] if argv is None else argv)
  report = run_check(**kwargs)
  print(format_verdicts(report))
  with open(out, "w") as f:
    json.dump(report, f, indent=1)
  print(f"report: {out}")
  return 1 if any(r["verdict"] == "FAIL" for r in report["results"].values()) else 0


if __name__ == "__main__":
  sys.exit(main())
