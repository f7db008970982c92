"""Study C's sweep: the grid (seeds outermost) and per-run configs, the summary over seeds (means
and bootstrap bands), the floors' flags, a tiny two-seed sweep through the command line, resume
(finished runs skipped, a missing evaluation redone, a changed config refused) and a stopped
run."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from experiments import train
from experiments.bootstrap import bootstrap_band
from experiments.data import digits
from experiments.studies.tradeoff import report as tradeoff_report
from experiments.studies.tradeoff import sweep
from experiments.studies.tradeoff.configs import digits as tradeoff_digits
from tests.experiments.test_train import ROOT, _env

CONFIG = os.path.join(ROOT, "experiments", "studies", "tradeoff", "configs", "digits.py")
ARCHITECTURE = "fc_small"  # the tiny sweep's
TINY = {
  "sweep.architectures": (ARCHITECTURE,),
  "sweep.latent_dims": (2,),
  "sweep.lams": (0.0, 1.0),
  "sweep.seeds": (0, 1),
  "sweep.extra_points": (),
  "sweep.figure_images": 2,
  "num_train_steps": 2,
  "batch_size": 16,
  "eval.num_images": 3,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("tfds")
  digits.prepare(directory)
  return str(directory)


def tiny_config(data_dir):
  c = tradeoff_digits.get_config()
  c.data.data_dir = data_dir
  for key, value in TINY.items():
    *parents, field = key.split(".")
    node = c
    for parent in parents:
      node = node[parent]
    node[field] = value
  return c


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_grid_and_run_configs():
  config = tradeoff_digits.get_config()
  architectures = list(config.sweep.architectures)
  points = sweep.grid(config)
  per_seed = (len(architectures) * 2 + 1) * 8  # and cnn_small at 4 channels: 16 values
  assert tuple(config.sweep.seeds) == (0, 1, 2) and len(points) == 3 * per_seed
  # Seeds outermost: a stopped sweep holds every other point at the first seeds.
  assert [p[3] for p in points] == [0] * per_seed + [1] * per_seed + [2] * per_seed
  assert points[:2] == [(architectures[0], 2, 0.0, 0), (architectures[0], 2, 0.1, 0)]
  assert points[per_seed - 9] == (architectures[-1], 16, 1.0, 0)
  assert points[per_seed - 8 : per_seed] == [("cnn_small", 4, lam, 0) for lam in config.sweep.lams]
  assert points[per_seed] == (architectures[0], 2, 0.0, 1)
  assert points[-1] == ("cnn_small", 4, 1.0, 2)
  assert sweep.is_extension("cnn_small", 4) and not sweep.is_extension("cnn_small", 16)
  assert not sweep.is_extension("fc_small", 2)
  assert [p[:3] for p in points[:per_seed]] == [p[:3] for p in points[per_seed : 2 * per_seed]]
  assert sweep.run_name("cnn_large", 16, 0.99, 2) == "cnn_large_z16_lam0.99_seed2"
  assert sweep.run_name("fc_small", 2, 0.0, 0) == "fc_small_z2_lam0_seed0"
  run = sweep.run_config(config, architectures[-1], 16, 0.99, 2)
  assert "sweep" not in run
  assert (run.model.architecture, run.model.latent_dim, run.lam) == (architectures[-1], 16, 0.99)
  assert run.seed == 2 and config.seed == 0
  assert run.num_train_steps == 899
  run.batch_size = 64  # a resolved copy: no link back to the sweep's config, nor onward
  assert run.num_train_steps == 899 and config.batch_size == 32
  assert "sweep" in config


@pytest.mark.parametrize(
  "field,value",
  [
    ("architectures", ("fc_small", "resnet")),
    ("architectures", ("fc_small", "fc_small")),
    ("architectures", ()),
    ("latent_dims", (0, 2)),
    ("latent_dims", (2, 2)),
    ("lams", (0, 1.5)),
    ("lams", (0, "x")),
    ("lams", (0, 0)),
    ("lams", ()),
    ("seeds", (0, 0)),
    ("seeds", (-1,)),
    ("seeds", ("a",)),
    ("seeds", ()),
    ("extra_points", (("fc_small", 2),)),  # already in the grid
    ("extra_points", (("resnet", 4),)),
    ("extra_points", (("cnn_small", 0),)),
  ],
)
def test_bad_grids_name_the_field(field, value):
  config = tradeoff_digits.get_config()
  config.sweep[field] = value
  with pytest.raises(ValueError, match=rf"config\.sweep\.{field}"):
    sweep.grid(config)
  config = tradeoff_digits.get_config()
  config.study = "icl"
  with pytest.raises(ValueError, match="config.study"):
    sweep.grid(config)


def _row(architecture, latent_dim, lam, seed, accuracy, mse, floors=(0.3, 0.1)):
  """A run's metrics row; its last state's metrics a little worse, its floors `floors`."""
  return dict(
    architecture=architecture,
    latent_dim=latent_dim,
    latent_size=latent_dim,
    lam=lam,
    seed=seed,
    accuracy=accuracy,
    mse=mse,
    last_accuracy=accuracy - 0.01,
    last_mse=mse + 0.01,
    dead_latent=0.0,
    mse_floor=floors[0],
    accuracy_floor=floors[1],
  )


def test_summary_means_and_bands_over_seeds():
  accuracy = {0: 0.80, 1: 0.90, 2: 0.86}
  mse = {0: 0.10, 1: 0.04, 2: 0.07}
  rows = [
    _row("a", 2, lam, s, accuracy[s] - lam / 10, mse[s] + lam)
    for s in (0, 1, 2)
    for lam in (0.0, 1.0)
  ]
  rows.append(_row("b", 4, 0.5, 0, 0.5, 0.3))  # one seed only
  summary = sweep.summarise(rows)
  assert [(r["architecture"], r["latent_dim"], r["lam"]) for r in summary] == [
    ("a", 2, 0.0),
    ("a", 2, 1.0),
    ("b", 4, 0.5),
  ]
  assert all(set(r) == set(sweep.SUMMARY_COLUMNS) for r in summary)
  first, second, single = summary
  assert first["seeds"] == second["seeds"] == 3 and single["seeds"] == 1
  for row, lam in ((first, 0.0), (second, 1.0)):
    for metric, values in (
      ("accuracy", [accuracy[s] - lam / 10 for s in (0, 1, 2)]),
      ("mse", [mse[s] + lam for s in (0, 1, 2)]),
    ):
      mean, lo, hi = bootstrap_band(np.asarray(values)[:, None], level=0.9)
      assert row[f"{metric}_mean"] == pytest.approx(np.mean(values), abs=1e-12)
      assert row[f"{metric}_mean"] == pytest.approx(mean[0], abs=1e-12)
      assert (row[f"{metric}_lo"], row[f"{metric}_hi"]) == pytest.approx((lo[0], hi[0]))
      # A band of the mean over seeds: within the seeds' range, around the mean, not a point.
      assert min(values) <= row[f"{metric}_lo"] < row[f"{metric}_mean"]
      assert row[f"{metric}_mean"] < row[f"{metric}_hi"] <= max(values)
  assert (single["accuracy_mean"], single["accuracy_lo"], single["accuracy_hi"]) == (0.5, 0.5, 0.5)
  assert (single["mse_mean"], single["mse_lo"], single["mse_hi"]) == (0.3, 0.3, 0.3)
  assert first["last_accuracy_mean"] == pytest.approx(np.mean(list(accuracy.values())) - 0.01)
  # A wider level, a wider band.
  wide = sweep.summarise(rows, level=0.99)[0]
  assert wide["mse_lo"] <= first["mse_lo"] and wide["mse_hi"] >= first["mse_hi"]


def test_points_below_a_floor_are_flagged():
  """A run is below a floor when its MSE is not below the mean image's or its accuracy not above
  the majority class's; a summary point is flagged when its mean or any seed's run is."""
  rows = [
    _row("clear", 2, 0.0, 0, 0.5, 0.2),
    _row("clear", 2, 0.0, 1, 0.6, 0.25),
    _row("one_seed", 2, 0.0, 0, 0.5, 0.2),
    _row("one_seed", 2, 0.0, 1, 0.1, 0.2),  # the majority class's accuracy: not above it
    _row("mse", 2, 0.0, 0, 0.9, 0.3),  # the mean image's MSE: not below it
  ]
  assert [sweep.below_floor(r) for r in rows] == [0, 0, 0, 1, 1]
  summary = {r["architecture"]: r for r in sweep.summarise(rows)}
  assert [(summary[a]["runs_below_floor"], summary[a]["flagged"]) for a in summary] == [
    (0, 0),
    (1, 1),
    (1, 1),
  ]
  assert (summary["clear"]["mse_floor"], summary["clear"]["accuracy_floor"]) == (0.3, 0.1)


def test_tradeoff_figure_from_a_summary(tmp_path):
  """The figure, with its floors and a flagged point (MSE 0.12 at the floor 0.12)."""
  rows = [
    _row(a, z, lam, s, 0.5 + 0.1 * s - 0.2 * lam, 0.02 + 0.1 * (1 - lam), floors=(0.12, 0.1))
    for s in (0, 1)
    for a in ("x", "cnn_small")
    for z in (2, 8)
    for lam in (0.0, 0.5, 1.0)
  ]
  summary = sweep.summarise(rows)
  assert sum(r["flagged"] for r in summary) == 4  # lambda 0: MSE 0.12, every curve
  path = tmp_path / sweep.TRADEOFF_PNG
  sweep.plot_tradeoff(summary, tradeoff_digits.get_config(), str(path))
  with Image.open(path) as image:
    assert min(image.size) > 400


@pytest.mark.smoke
def test_smoke_sweep_with_two_seeds_then_resume(data_dir, tmp_path):
  workdir = tmp_path / "sweep"
  overrides = [f"--config.{key}={value!r}" for key, value in TINY.items()]
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.studies.tradeoff.sweep",
      f"--config={CONFIG}",
      f"--workdir={workdir}",
      f"--config.data.data_dir={data_dir}",
      *overrides,
    ],
    env=_env(),
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"[4/4] {ARCHITECTURE}_z2_lam1_seed1" in result.stdout
  rows = _rows(workdir / sweep.CSV_FILE)
  assert list(rows[0]) == list(sweep.COLUMNS)
  assert [(r["architecture"], r["latent_dim"], r["lam"], r["seed"]) for r in rows] == [
    (ARCHITECTURE, "2", lam, seed) for seed in ("0", "1") for lam in ("0.0", "1.0")
  ]
  for r in rows:
    assert 0 <= float(r["accuracy"]) <= 1 and float(r["mse"]) > 0
    assert float(r["cross_entropy"]) > 0 and r["n_test"] == "360" and r["steps"] == "2"
    # the paper's choice, the best state (here the only one scored), the last beside it
    assert r["select"] == "best" and r["last_mse"] == r["mse"] and r["last_steps"] == "2"
    assert float(r["mse_floor"]) > 0 and r["below_floor"] in ("0", "1")
  assert rows[0]["mse"] != rows[2]["mse"]  # the seeds' runs differ (initialisation, order)

  summary = _rows(workdir / sweep.SUMMARY_CSV)
  assert list(summary[0]) == list(sweep.SUMMARY_COLUMNS)
  assert [(r["architecture"], r["latent_dim"], r["lam"], r["seeds"]) for r in summary] == [
    (ARCHITECTURE, "2", "0.0", "2"),
    (ARCHITECTURE, "2", "1.0", "2"),
  ]
  for row, (seed0, seed1) in zip(summary, [(rows[0], rows[2]), (rows[1], rows[3])]):
    for metric in ("accuracy", "mse"):
      values = [float(seed0[metric]), float(seed1[metric])]
      assert float(row[f"{metric}_mean"]) == pytest.approx(np.mean(values), rel=1e-9)
      assert min(values) <= float(row[f"{metric}_lo"]) <= float(row[f"{metric}_mean"])
      assert float(row[f"{metric}_mean"]) <= float(row[f"{metric}_hi"]) <= max(values)
  # reconstructions.png: 2 images x (1 test row + 2 lambdas) of one (architecture, latent).
  for name, smallest in ((sweep.TRADEOFF_PNG, 400), (sweep.RECONSTRUCTIONS_PNG, 150)):
    with Image.open(workdir / name) as image:
      assert min(image.size) > smallest

  # Again: every run is finished, nothing retrains; a run whose evaluation is gone is
  # evaluated again from its final checkpoint; the same rows come back.
  runs = workdir / sweep.RUNS_DIR
  assert sorted(os.listdir(runs)) == sorted(
    f"{ARCHITECTURE}_z2_lam{lam}_seed{seed}" for lam in (0, 1) for seed in (0, 1)
  )
  metrics = {
    p: os.path.getmtime(runs / p / "eval" / tradeoff_report.METRICS_JSON) for p in os.listdir(runs)
  }
  redone = f"{ARCHITECTURE}_z2_lam0_seed1"
  os.remove(runs / redone / "eval" / tradeoff_report.METRICS_JSON)
  again = sweep.run_sweep(tiny_config(data_dir), str(workdir))
  for name, mtime in metrics.items():
    now = os.path.getmtime(runs / name / "eval" / tradeoff_report.METRICS_JSON)
    assert (now == mtime) == (name != redone), name
  assert [r["steps"] for r in again] == [2] * 4 and [r["seed"] for r in again] == [0, 0, 1, 1]
  for old, new in zip(rows, _rows(workdir / sweep.CSV_FILE)):
    assert new["seed"] == old["seed"]
    for key in ("accuracy", "mse", "cross_entropy"):
      np.testing.assert_allclose(float(new[key]), float(old[key]), rtol=1e-6)

  changed = tiny_config(data_dir)
  changed.optimizer.learning_rate = 2e-3
  with pytest.raises(ValueError, match="holds a run with another config"):
    sweep.run_sweep(changed, str(workdir))


def test_a_stopped_run_ends_the_sweep_without_results(data_dir, tmp_path, monkeypatch):
  """SIGTERM makes train_and_evaluate return before evaluating: the sweep stops there."""
  calls = []
  monkeypatch.setattr(train, "train_and_evaluate", lambda config, workdir: calls.append(workdir))
  assert sweep.run_sweep(tiny_config(data_dir), str(tmp_path)) is None
  assert len(calls) == 1 and calls[0].endswith(f"{ARCHITECTURE}_z2_lam0_seed0")
  assert not (tmp_path / sweep.CSV_FILE).exists()
  assert not (tmp_path / sweep.SUMMARY_CSV).exists()
