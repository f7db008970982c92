"""Study B's task: batches from (seed, step) under the curriculum, per-model optimisers, the
config checks, a smoke run of every icl config, and 8 devices following 1."""

import csv
import os

import jax
import numpy as np
import pytest

from experiments import data, parallel, train
from experiments.configs import icl_base
from experiments.data import icl_tasks
from experiments.tasks import icl
from tests.experiments.test_train import ROOT, _losses, run_main

TRAINED_TASKS = ("linear_regression", "sparse_linear_regression", "relu_2nn", "decision_tree")


def tiny(config, models="mamba,mamba_length_adaptive,transformer,s4d"):
  """A config shrunk to seconds: 1-layer 8-wide models, 3 steps, 128 evaluation prompts."""
  config.models = models
  config.batch_size = 8
  config.num_train_steps = 3
  config.log_every_steps = 1
  config.checkpoint_every_steps = 3
  for family in ("mamba", "transformer", "s4d"):
    config.model[family].d_model = 8
    config.model[family].n_layers = 1
  config.model.mamba.d_state = 4
  config.model.s4d.d_state = 4
  config.model.transformer.n_heads = 2
  config.eval.num_prompts = 32
  config.eval.batch_size = 16
  config.eval.slow_baseline_prompts = 2
  config.eval.bootstrap_resamples = 50
  config.eval.probe_prompts = 16
  return config


def test_batch_is_the_curriculum_stage_of_the_global_example_stream():
  config = tiny(icl_base.get_config("linear_regression", "paper"))
  config.icl.curriculum.dims.interval = config.icl.curriculum.points.interval = 2
  task = icl.Task(config, parallel.make_mesh())
  for step in (0, 3, 4):
    batch = task.batch(step)
    d_active, n_points = icl_tasks.curriculum_at(step, config.icl.curriculum)
    assert (d_active, n_points) == (5 + step // 2, 11 + 2 * (step // 2))
    expected = data.icl_batch(task.data_key, "linear_regression", n_points,
                              example_index=np.arange(8 * step, 8 * step + 8), d=20,
                              d_active=d_active)
    np.testing.assert_array_equal(batch["xs"], expected["xs"])
    np.testing.assert_array_equal(batch["ys"], expected["ys"])
    np.testing.assert_array_equal(batch["d_active"], np.full(8, d_active))
    assert not np.any(np.asarray(batch["xs"])[..., d_active:])


def test_step_metrics_and_per_family_learning_rates():
  config = tiny(icl_base.get_config("linear_regression", "cpu"))
  task = icl.Task(config, parallel.make_mesh())
  assert task.optimizer_config("s4d").learning_rate == 3e-3
  assert task.optimizer_config("mamba").learning_rate == config.optimizer.learning_rate == 1e-3
  state = task.init_state(jax.random.key(0))
  batch = task.batch(0)
  _, metrics = jax.jit(task.train_step)(state, batch)
  for name in task.names:
    model = task.model(state, name)
    predictions = data.read_predictions(model(data.make_prompt(batch["xs"], batch["ys"])))
    mse = np.mean(np.square(np.asarray(predictions) - np.asarray(batch["ys"])))
    np.testing.assert_allclose(metrics[f"loss_{name}"], mse, rtol=1e-5)
    np.testing.assert_allclose(metrics[f"error_{name}"], mse / 5, rtol=1e-5)
  assert float(metrics["n_points"]) == 11 and float(metrics["d_active"]) == 5


def test_bad_configs_are_refused():
  mesh = parallel.make_mesh()
  config = tiny(icl_base.get_config("noisy_linear_regression", "cpu"))
  with pytest.raises(ValueError, match="evaluation only"):
    icl.Task(config, mesh)
  config = tiny(icl_base.get_config("linear_regression", "cpu"))
  config.icl.curriculum.dims.end = 6
  with pytest.raises(ValueError, match="exceeds config.icl.d = 5"):
    icl.Task(config, mesh)
  with pytest.raises(ValueError, match="Unknown config variant"):
    icl_base.get_config("linear_regression", "tpu")


def test_shipped_configs_follow_the_paper():
  config = icl_base.get_config("relu_2nn", "paper")
  assert (config.icl.d, config.batch_size, config.num_train_steps) == (20, 64, 500_000)
  assert config.model.mamba.n_layers == 24 and config.model.transformer.n_layers == 12
  assert config.model.mamba.d_model == config.model.transformer.d_model == 256
  assert dict(config.icl.curriculum.points) == dict(start=26, end=101, increment=5,
                                                    interval=2000)
  assert config.eval.n_points >= 2.5 * 101 and config.eval.num_prompts == 1280
  cpu = icl_base.get_config("linear_regression", "cpu")
  assert cpu.icl.d == 5 and cpu.model.mamba.d_model == 64 and cpu.eval.n_points >= 2.5 * 11


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("task_name", TRAINED_TASKS)
def test_smoke_run_of_each_icl_config(task_name, tmp_path):
  module = __import__(f"experiments.configs.icl_{task_name}", fromlist=["get_config"])
  config = tiny(module.get_config("cpu"),
                models="mamba,mamba_length_adaptive,transformer,s4d"
                if task_name == "linear_regression" else "mamba,transformer")
  train.train_and_evaluate(config, str(tmp_path))
  out = tmp_path / "eval"
  rows = _rows(out / "icl_curves.csv")
  assert set(rows[0]) >= {"task", "model", "n_points", "error", "lo", "hi"}
  expected_models = set(config.models.split(",")) | set(
      icl_base.BASELINES[task_name].split(","))
  eval_tasks = config.eval.tasks.split(",")
  for name in eval_tasks:
    assert {r["model"] for r in rows if r["task"] == name} == expected_models
    assert (out / f"icl_{name}.png").exists()
  points = sorted({int(r["n_points"]) for r in rows})
  assert points == list(range(config.eval.n_points))
  for r in rows:
    assert float(r["lo"]) <= float(r["error"]) <= float(r["hi"])
  assert len(_rows(out / "icl_summary.csv")) == len(eval_tasks) * len(expected_models)
  assert (out / "icl_summary.md").exists()
  if task_name in ("linear_regression", "sparse_linear_regression"):
    probing = _rows(out / "probing.csv")
    assert {r["model"] for r in probing} == set(config.models.split(","))
    assert (out / "probing.png").exists()
  else:
    assert not (out / "probing.csv").exists()


@pytest.mark.slow
def test_paper_variant_smoke_run_with_curriculum(tmp_path):
  config = tiny(icl_base.get_config("linear_regression", "paper"), models="mamba,transformer")
  config.icl.curriculum.dims.interval = config.icl.curriculum.points.interval = 1
  config.eval.tasks = "linear_regression"
  train.train_and_evaluate(config, str(tmp_path))
  rows = _rows(tmp_path / "eval" / "icl_curves.csv")
  assert max(int(r["n_points"]) for r in rows) == config.eval.n_points - 1 == 102
  # Least squares is exact once it has seen d = 20 noiseless points.
  exact = [float(r["error"]) for r in rows
           if r["model"] == "least_squares" and int(r["n_points"]) >= 21]
  assert max(exact) < 1e-6


@pytest.mark.slow
def test_eight_devices_follow_one(tmp_path):
  config = os.path.join(ROOT, "experiments", "configs", "icl_linear_regression.py") + ":cpu"
  overrides = ["--config.models=mamba,transformer", "--config.batch_size=16",
               "--config.num_train_steps=4", "--config.log_every_steps=1",
               "--config.model.mamba.n_layers=1", "--config.model.transformer.n_layers=1",
               "--config.eval.num_prompts=32", "--config.eval.batch_size=16",
               "--config.eval.tasks=linear_regression", "--config.eval.probe_prompts=0"]
  losses = {}
  for devices in (1, 8):
    workdir = str(tmp_path / str(devices))
    run_main(config, workdir, overrides, devices)
    losses[devices] = _losses(workdir)
  assert len(losses[1]) == 4
  np.testing.assert_allclose(losses[8], losses[1], rtol=1e-5, atol=1e-6)
