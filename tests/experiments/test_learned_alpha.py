"""The learned length-adaptive exponent: found per layer under both layouts, logged as training
metrics by both side-by-side studies, written to eval/discretization.csv, and it moves when a
model trains at L far from length_ref."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mamba_jax
from experiments import data, learned_alpha, parallel
from experiments.studies.icl import task as icl
from experiments.studies.length_generalisation import task as study_a
from tests.experiments.studies.icl.test_task import get_config as icl_config
from tests.experiments.studies.icl.test_task import tiny as tiny_icl


def _params(scan_layers, discretization="length_adaptive"):
  config = mamba_jax.MambaConfig(
    d_model=4,
    n_layers=3,
    d_state=2,
    discretization=discretization,
    length_ref=4.0 if discretization == "length_adaptive" else None,
    scan_layers=scan_layers,
  )
  params = nnx.state(mamba_jax.MambaModel(config, 3, 3, rngs=nnx.Rngs(0)), nnx.Param)
  # Distinct values per layer and channel: layer l, channel c holds l + c / 10.
  values = jnp.arange(3)[:, None] + jnp.arange(8)[None, :] / 10
  if discretization == "fixed":
    return params, None
  if scan_layers:
    params["backbone"]["stacked_layers"]["mixer"]["discretization"]["alpha"][...] = values
  else:
    for layer in range(3):
      params["backbone"]["layers"][layer]["mixer"]["discretization"]["alpha"][...] = values[layer]
  return params, values


@pytest.mark.parametrize("scan_layers", [False, True])
def test_alpha_is_found_per_layer_in_both_layouts(scan_layers):
  params, values = _params(scan_layers)
  found = learned_alpha.alpha_by_layer(params)
  assert [layer for layer, _ in found] == [0, 1, 2]
  for layer, alpha in found:
    np.testing.assert_array_equal(alpha, values[layer])
  pure = learned_alpha.alpha_by_layer(nnx.to_pure_dict(params))
  assert [layer for layer, _ in pure] == [0, 1, 2]
  metrics = jax.jit(lambda p: learned_alpha.alpha_metrics("m", p))(params)
  np.testing.assert_allclose(metrics["alpha_mean_m"], np.mean(values), rtol=1e-6)
  assert float(metrics["alpha_min_m"]) == 0.0
  np.testing.assert_allclose(metrics["alpha_max_m"], 2.7, rtol=1e-6)


def test_fixed_models_have_no_alpha_and_the_csv_lists_only_those_with_one(tmp_path):
  fixed, _ = _params(False, "fixed")
  adaptive, values = _params(True)
  assert learned_alpha.alpha_by_layer(fixed) == []
  assert learned_alpha.alpha_metrics("fixed", fixed) == {}
  learned_alpha.write_csv(str(tmp_path), {"fixed": fixed, "adaptive": adaptive})
  with open(tmp_path / learned_alpha.CSV_FILE) as f:
    rows = list(csv.DictReader(f))
  assert tuple(rows[0]) == learned_alpha.CSV_FIELDS
  assert [(r["model"], int(r["layer"])) for r in rows] == [("adaptive", i) for i in range(3)]
  for row, layer_values in zip(rows, np.asarray(values)):
    np.testing.assert_allclose(float(row["alpha_mean"]), layer_values.mean(), rtol=1e-6)
    np.testing.assert_allclose(float(row["alpha_min"]), layer_values.min(), rtol=1e-6)
    np.testing.assert_allclose(float(row["alpha_max"]), layer_values.max(), rtol=1e-6)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("tfds")
  data.digits.prepare(directory)
  return str(directory)


def test_alpha_moves_when_study_a_trains_far_from_length_ref(data_dir, tmp_path):
  """30 steps at L in 2..4 with length_ref 64: the step's gradient on alpha is non-zero from the
  first step, and the demo's optimiser (Adam) moves it well beyond noise."""
  from experiments.studies.length_generalisation.configs import digits

  c = digits.get_config()
  c.data.data_dir = data_dir
  c.data.image_size = 16
  c.models = ("mamba", "mamba_length_adaptive")
  c.batch_size = 8
  c.num_train_steps = 30
  c.sequence.train_length_min, c.sequence.train_length_max = 2, 4
  c.sequence.num_queries = 4
  c.model.mamba.n_layers, c.model.mamba.d_state = 2, 4
  c.model.mamba.length_ref = 64.0
  c.optimizer.schedule = "constant"  # the demo's 100-step warm-up would outlast the test
  task = study_a.Task(c, parallel.make_mesh())
  state = task.init_state(jax.random.key(0))
  train_step = jax.jit(task.train_step)
  metrics = {}
  for step in range(c.num_train_steps):
    state, metrics = train_step(state, task.batch(step))
  assert not any(key.endswith("_mamba") and key.startswith("alpha") for key in metrics)
  assert (
    float(metrics["alpha_max_mamba_length_adaptive"])
    - float(metrics["alpha_min_mamba_length_adaptive"])
    > 0.0
  )
  moved = max(
    abs(float(metrics[f"alpha_{s}_mamba_length_adaptive"])) for s in ("min", "max", "mean")
  )
  assert moved > 0.02  # optax.lamb left |alpha| <= 5e-5 after 1000 steps of the demo
  rows = task.write_discretization(state, str(tmp_path))
  assert [(r["model"], r["layer"]) for r in rows] == [("mamba_length_adaptive", i) for i in (0, 1)]
  assert (tmp_path / learned_alpha.CSV_FILE).exists()


def test_study_b_logs_alpha():
  config = tiny_icl(icl_config("linear_regression", "cpu"), models=("mamba_length_adaptive",))
  task = icl.Task(config, parallel.make_mesh())
  _, metrics = jax.jit(task.train_step)(task.init_state(jax.random.key(0)), task.batch(0))
  assert {"alpha_mean_mamba_length_adaptive", "alpha_max_mamba_length_adaptive"} <= set(metrics)
