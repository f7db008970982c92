"""Study C's sweep: the grid and per-run configs, a tiny sweep through the command line, resume
(finished runs skipped, a missing evaluation redone, a changed config refused) and a stopped run."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from experiments import train
from experiments.data import digits
from experiments.studies.tradeoff import report as tradeoff_report
from experiments.studies.tradeoff import sweep
from experiments.studies.tradeoff.configs import digits as tradeoff_digits
from tests.experiments.test_train import ROOT, _env

CONFIG = os.path.join(ROOT, "experiments", "studies", "tradeoff", "configs", "digits.py")
TINY = {
  "sweep.architectures": ("fc_small",),
  "sweep.latent_dims": (2, 4),
  "sweep.lams": (0.0, 1.0),
  "sweep.figure_images": 2,
  "num_train_steps": 2,
  "batch_size": 16,
  "eval.num_images": 3,
  "model.fc.small": (16,),
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
  points = sweep.grid(config)
  assert len(points) == 4 * 2 * 8
  assert points[:2] == [("fc_small", 2, 0.0), ("fc_small", 2, 0.1)]
  assert points[-1] == ("mamba", 16, 1.0)
  assert sweep.run_name("cnn", 16, 0.99) == "cnn_z16_lam0.99"
  run = sweep.run_config(config, "cnn", 16, 0.99)
  assert "sweep" not in run
  assert (run.model.architecture, run.model.latent_dim, run.lam) == ("cnn", 16, 0.99)
  assert run.num_train_steps == 899
  run.batch_size = 64  # a resolved copy: no link back to the sweep's config, nor onward
  assert run.num_train_steps == 899 and config.batch_size == 32
  assert config.model.architecture == "fc_small" and "sweep" in config


@pytest.mark.parametrize(
  "field,value",
  [
    ("architectures", ("fc_small", "resnet")),
    ("architectures", ("cnn", "cnn")),
    ("architectures", ()),
    ("latent_dims", (0, 2)),
    ("latent_dims", (2, 2)),
    ("lams", (0, 1.5)),
    ("lams", (0, "x")),
    ("lams", (0, 0)),
    ("lams", ()),
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


def test_smoke_sweep_then_resume(data_dir, tmp_path):
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
  assert "[4/4] fc_small_z4_lam1" in result.stdout
  rows = _rows(workdir / sweep.CSV_FILE)
  assert list(rows[0]) == list(sweep.COLUMNS)
  assert [(r["architecture"], r["latent_dim"], r["lam"]) for r in rows] == [
    ("fc_small", z, lam) for z in ("2", "4") for lam in ("0.0", "1.0")
  ]
  for r in rows:
    assert 0 <= float(r["accuracy"]) <= 1 and float(r["mse"]) > 0
    assert float(r["cross_entropy"]) > 0 and r["n_test"] == "360" and r["steps"] == "2"
  for name in (sweep.TRADEOFF_PNG, sweep.RECONSTRUCTIONS_PNG):
    with Image.open(workdir / name) as image:
      assert min(image.size) > 200

  # Again: every run is finished, nothing retrains; a run whose evaluation is gone is
  # evaluated again from its final checkpoint; the same rows come back.
  runs = workdir / sweep.RUNS_DIR
  metrics = {
    p: os.path.getmtime(runs / p / "eval" / tradeoff_report.METRICS_JSON) for p in os.listdir(runs)
  }
  os.remove(runs / "fc_small_z4_lam0" / "eval" / tradeoff_report.METRICS_JSON)
  again = sweep.run_sweep(tiny_config(data_dir), str(workdir))
  for name, mtime in metrics.items():
    now = os.path.getmtime(runs / name / "eval" / tradeoff_report.METRICS_JSON)
    assert (now == mtime) == (name != "fc_small_z4_lam0"), name
  assert [r["steps"] for r in again] == [2] * 4
  for old, new in zip(rows, _rows(workdir / sweep.CSV_FILE)):
    for key in ("accuracy", "mse", "cross_entropy"):
      np.testing.assert_allclose(float(new[key]), float(old[key]), rtol=1e-6)

  changed = tiny_config(data_dir)
  changed.seed = 1
  with pytest.raises(ValueError, match="holds a run with another config"):
    sweep.run_sweep(changed, str(workdir))


def test_a_stopped_run_ends_the_sweep_without_results(data_dir, tmp_path, monkeypatch):
  """SIGTERM makes train_and_evaluate return before evaluating: the sweep stops there."""
  calls = []
  monkeypatch.setattr(train, "train_and_evaluate", lambda config, workdir: calls.append(workdir))
  assert sweep.run_sweep(tiny_config(data_dir), str(tmp_path)) is None
  assert len(calls) == 1 and calls[0].endswith("fc_small_z2_lam0")
  assert not (tmp_path / sweep.CSV_FILE).exists()
