"""Study B over seeds: the grid and per-seed configs, a tiny two-seed sweep (curves with bands
over seeds and prompts, alpha and probing per seed), resume, and a changed config refused."""

import csv
import os

import numpy as np
import pytest

from experiments.studies.icl import sweep
from tests.experiments.studies.icl.test_task import get_config, tiny


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_grid_and_run_configs():
  config = get_config("linear_regression", "cpu")
  assert sweep.grid(config) == [0, 1, 2]  # the paper's 3 seeds by default
  run = sweep.run_config(config, 2)
  assert "sweep" not in run and run.seed == 2
  for value, message in (((0, 0), "distinct"), ((-1,), "integers >= 0"), ((), "a tuple")):
    bad = get_config("linear_regression", "cpu")
    bad.sweep.seeds = value
    with pytest.raises(ValueError, match=message):
      sweep.grid(bad)
  other = get_config("linear_regression", "cpu")
  other.study = "tradeoff"
  with pytest.raises(ValueError, match="study B"):
    sweep.grid(other)


def test_two_seed_sweep_writes_bands_over_seeds_and_resumes(tmp_path):
  config = tiny(get_config("linear_regression", "cpu"), models=("mamba", "mamba_length_adaptive"))
  config.eval.function_classes = ("linear_regression",)
  config.sweep.seeds = (0, 1)
  rows = sweep.run_sweep(config, str(tmp_path))
  assert rows and {r["seeds"] for r in rows} == {2}
  for r in rows:
    assert r["lo"] <= r["error"] <= r["hi"]
  curves = _rows(tmp_path / "icl_curves.csv")
  assert {r["model"] for r in curves} == {
    "mamba",
    "mamba_length_adaptive",
    "least_squares",
    "averaging",
    "knn3",
  }
  # The mean over seeds is the mean of the seeds' own curves.
  per_seed = [
    {(r["model"], r["n_points"]): float(r["error"]) for r in _rows(path)}
    for path in (tmp_path / "runs" / f"seed{s}" / "eval" / "icl_curves.csv" for s in (0, 1))
  ]
  for r in curves:
    key = (r["model"], r["n_points"])
    np.testing.assert_allclose(float(r["error"]), (per_seed[0][key] + per_seed[1][key]) / 2)
  assert per_seed[0] != per_seed[1]  # each seed trained and evaluated on its own draws
  alphas = _rows(tmp_path / "discretization.csv")
  assert {r["seed"] for r in alphas} == {"0", "1"}
  assert all(r["model"] == "mamba_length_adaptive" for r in alphas)
  assert any(abs(float(r["alpha_mean"])) > 0 for r in alphas)  # lengths vary: alpha learns
  probing = _rows(tmp_path / "probing.csv")
  assert {r["seed"] for r in probing} == {"0", "1"}
  means = sweep.mean_over_seeds(probing)
  assert len(means) == len(probing) // 2 and {m["seeds"] for m in means} == {2}
  first = means[0]
  pair = [
    float(r["error"])
    for r in probing
    if (r["model"], int(r["layer"]), r["probe"]) == (first["model"], first["layer"], first["probe"])
  ]
  np.testing.assert_allclose(first["error"], np.mean(pair))
  assert (tmp_path / "probing.png").exists()
  summary = {r["model"]: r for r in _rows(tmp_path / "icl_summary.csv")}
  assert int(summary["mamba"]["parameters"]) > 0 and summary["knn3"]["parameters"] == ""
  for name in ("icl_linear_regression.png", "icl_summary.csv", "icl_summary.md"):
    assert (tmp_path / name).exists()
  done = tmp_path / "runs" / "seed1" / "eval" / "discretization.csv"
  before = os.path.getmtime(done)
  sweep.run_sweep(config, str(tmp_path))  # resumes: nothing retrains
  assert os.path.getmtime(done) == before
  config.num_train_steps = 4
  with pytest.raises(ValueError, match="another config"):
    sweep.run_sweep(config, str(tmp_path))
