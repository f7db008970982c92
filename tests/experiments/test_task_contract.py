"""Every study's task meets experiments/task.py's contract, and its methods work in any order:
a task that never ran init_state trains a state made by another task of the same config."""

import jax
import numpy as np
import pytest

from experiments import data, parallel, studies
from experiments.task import Task
from tests.experiments.studies.icl.test_task import get_config as icl_config
from tests.experiments.studies.icl.test_task import tiny as tiny_icl


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("tfds")
  data.digits.prepare(directory)
  return str(directory)


def _length_generalisation(data_dir):
  from experiments.studies.length_generalisation.configs import digits

  c = digits.get_config()
  c.data.data_dir = data_dir
  c.data.image_size = 16
  c.models = ("mamba", "transformer")
  c.batch_size = 4
  c.sequence.train_length_min, c.sequence.train_length_max = 2, 4
  c.sequence.num_queries = 4
  c.model.mamba.n_layers = c.model.transformer.n_layers = 1
  return c


def _tradeoff(data_dir):
  from experiments.studies.tradeoff.configs import digits

  c = digits.get_config()
  c.data.data_dir = data_dir
  c.batch_size = 8
  return c


@pytest.mark.parametrize("study", ["length_generalisation", "icl", "tradeoff"])
def test_methods_work_in_any_order(study, data_dir):
  if study == "icl":
    config = tiny_icl(icl_config("linear_regression", "cpu"), models=("mamba", "s4d"))
  else:
    config = {"length_generalisation": _length_generalisation, "tradeoff": _tradeoff}[study](
      data_dir
    )
  assert config.study == study
  mesh = parallel.make_mesh()
  made = studies.make_task(config, mesh)
  assert isinstance(made, Task)
  state = made.init_state(jax.random.key(0))
  fresh = studies.make_task(config, mesh)  # init_state never called on this one
  batch = fresh.batch(1)
  new_state, metrics = jax.jit(fresh.train_step)(state, batch)
  again, metrics_again = jax.jit(made.train_step)(state, made.batch(1))
  assert np.isfinite(float(metrics["loss"]))
  np.testing.assert_array_equal(metrics["loss"], metrics_again["loss"])
  for got, want in zip(jax.tree.leaves(new_state), jax.tree.leaves(again)):
    np.testing.assert_array_equal(got, want)


def test_unknown_study_is_refused():
  from ml_collections import ConfigDict

  with pytest.raises(ValueError, match="config.study = 'reconstruction'"):
    studies.make_task(ConfigDict({"study": "reconstruction"}), parallel.make_mesh())
  with pytest.raises(ValueError, match="config.study is missing.*'reconstruction'"):
    studies.make_task(ConfigDict({"task": "reconstruction"}), parallel.make_mesh())
