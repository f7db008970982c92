"""Study A's training-range experiment: the grid and per-run configs, a tiny sweep of the three
Mamba variants (CSVs, bands, figures, the length token at its scale, the stages across ranges),
resume, a changed config refused, and a stopped run."""

import csv
import os

import jax
import numpy as np
import pytest

from experiments import train
from experiments.studies.length_generalisation import cross_range, sweep
from experiments.studies.length_generalisation.configs import digits_sweep, omniglot
from tests.experiments.test_selection import tiny_config

MAMBAS = ("mamba", "mamba_length_adaptive", "mamba_length_token")


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def sweep_config(data_dir):
  c = tiny_config(data_dir, 2, select="last", models=MAMBAS)
  c.model.length_token_scale = 0.4  # L_max / 10 at the largest range, 4
  c.eval.lengths = (1, 4, 8)
  c.sweep = digits_sweep.get_config().sweep
  c.sweep.train_ranges = ((2, 3), (2, 4))
  c.sweep.seeds = (0, 1)
  return c


def test_grid_and_run_configs():
  config = digits_sweep.get_config()
  points = sweep.grid(config)
  assert len({(lo, hi) for lo, hi, _ in points}) >= 3
  assert len({seed for _, _, seed in points}) >= 3
  assert max(config.eval.lengths) >= 4 * max(hi for _, hi, _ in points)
  assert points[: len(config.sweep.train_ranges)] == [
    (lo, hi, config.sweep.seeds[0]) for lo, hi in config.sweep.train_ranges
  ]  # seeds outermost
  assert tuple(config.models) == MAMBAS
  run = sweep.run_config(config, 4, 32, 2)
  assert "sweep" not in run
  # one token scale for every range, as the paper's 100 for its ranges up to 1024
  assert run.model.length_token_scale == sweep.run_config(config, 4, 8, 0).model.length_token_scale
  assert (run.sequence.train_length_min, run.sequence.train_length_max, run.seed) == (4, 32, 2)
  assert run.model.mamba.length_ref == 18.0
  assert sweep.grid(omniglot.get_config())[:3] == [(1, 128, 0), (1, 512, 0), (1, 1024, 0)]
  for field, value, message in (
    ("train_ranges", ((4, 2),), "1 <= min <= max"),
    ("train_ranges", ((2, 4), (2, 4)), "distinct"),
    ("train_ranges", (4, 8), "expected \\(min, max\\)"),
    ("seeds", (0, 0), "distinct"),
    ("seeds", (-1,), "integers >= 0"),
  ):
    bad = digits_sweep.get_config()
    bad.sweep[field] = value
    with pytest.raises(ValueError, match=message):
      sweep.grid(bad)


def test_bands_over_seeds():
  rows = [
    {"model": "m", "train_min": 1, "train_max": 2, "L": 4, "mse": value}
    for value in (1.0, 2.0, 6.0)
  ]
  (summary,) = sweep.summarise(rows)
  assert summary["seeds"] == 3 and summary["mse_mean"] == pytest.approx(3.0)
  assert 1.0 <= summary["lo"] <= 3.0 <= summary["hi"] <= 6.0 and summary["lo"] < summary["hi"]


def test_tiny_sweep_writes_results_and_resumes(tmp_path):
  data_dir = tmp_path / "tfds"
  workdir = tmp_path / "sweep"
  summary = sweep.run_sweep(sweep_config(data_dir), str(workdir))
  rows = _rows(workdir / sweep.SWEEP_CSV)
  assert tuple(rows[0]) == sweep.SWEEP_COLUMNS
  models = MAMBAS + ("mean_image",)
  expected = {
    (m, lo, "4" if hi == 4 else "3", s, n)
    for m in models
    for lo, hi in ((2, 3), (2, 4))
    for s in ("0", "1")
    for n in ("1", "4", "8")
  }
  assert {(r["model"], int(r["train_min"]), r["train_max"], r["seed"], r["L"]) for r in rows} == {
    (m, lo, hi, s, n) for m, lo, hi, s, n in expected
  }
  written = _rows(workdir / sweep.SUMMARY_CSV)
  assert tuple(written[0]) == sweep.SUMMARY_COLUMNS and len(written) == len(summary) == 4 * 2 * 3
  for row in written:
    assert row["seeds"] == "2"
    assert float(row["lo"]) <= float(row["mse_mean"]) <= float(row["hi"])
  stages = _rows(workdir / "stages.csv")
  assert {(r["train_max"], r["seed"], r["L"]) for r in stages} == {
    (hi, s, n) for hi in ("3", "4") for s in ("0", "1") for n in (hi, str(4 * int(hi)))
  }
  alphas = _rows(workdir / "discretization.csv")
  assert {r["model"] for r in alphas} == {"mamba_length_adaptive"} and len(alphas) == 4
  assert (workdir / sweep.SWEEP_PNG).stat().st_size > 10_000
  # the length token trained in every run at the sweep's scale
  task, _ = train.restore_run(str(workdir / sweep.RUNS_DIR / "train2-4_seed1"))
  assert task.config.model.length_token_scale == 0.4
  assert task.build("mamba_length_token", jax.random.key(0)).length_token_scale == 0.4
  # the stages across ranges: the mean over seeds of stages.csv at k of L = 4x top
  across = _rows(workdir / cross_range.CSV)
  assert tuple(across[0]) == cross_range.COLUMNS and len(across) == 3 * 2 * 4
  for row in across:
    hi, k = int(row["train_max"]), int(row["k"])
    assert row["L"] == str(4 * hi) and k == cross_range.stages(hi)[row["stage"]]
    values = [
      float(r["mse"])
      for r in stages
      if (r["model"], r["train_max"], r["L"], r["k"]) == (row["model"], str(hi), row["L"], str(k))
    ]
    assert len(values) == 2 and float(row["mse_mean"]) == pytest.approx(np.mean(values))
  for name in MAMBAS:
    assert (workdir / f"stages_across_ranges_{name}.png").stat().st_size > 10_000

  # Again: nothing retrains, the same results come back; a changed config is refused.
  runs = workdir / sweep.RUNS_DIR
  mtimes = {p: os.path.getmtime(runs / p / "eval" / "stages.csv") for p in os.listdir(runs)}
  again = sweep.run_sweep(sweep_config(data_dir), str(workdir))
  assert {p: os.path.getmtime(runs / p / "eval" / "stages.csv") for p in mtimes} == mtimes
  for old, new in zip(summary, again):
    np.testing.assert_allclose(new["mse_mean"], old["mse_mean"], rtol=1e-6)
  changed = sweep_config(data_dir)
  changed.num_train_steps = 3
  with pytest.raises(ValueError, match="holds a run with another config"):
    sweep.run_sweep(changed, str(workdir))


def test_a_stopped_run_ends_the_sweep_without_results(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(train, "train_and_evaluate", lambda config, workdir: calls.append(workdir))
  assert sweep.run_sweep(sweep_config(tmp_path / "tfds"), str(tmp_path)) is None
  assert len(calls) == 1 and calls[0].endswith("train2-3_seed0")
  assert not (tmp_path / sweep.SWEEP_CSV).exists()
