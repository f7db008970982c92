"""Model selection (config.eval.select = "best"): the loop evaluates, per model, the state with
the lowest validation score, and a resumed run keeps the best of the run before it."""

import os

import jax
import numpy as np
import pytest

from experiments import checkpointing, selection, train
from experiments.studies.length_generalisation import task as study_a
from experiments.studies.length_generalisation.configs import digits


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """The digits prepared once for the module."""
  return tmp_path_factory.mktemp("tfds")


def tiny_config(data_dir, num_train_steps, select="best", models=("mamba", "transformer")):
  c = digits.get_config()
  c.models = models
  c.batch_size = 8
  c.num_train_steps = num_train_steps
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.checkpoints_to_keep = 10
  c.data.data_dir = str(data_dir)
  c.data.image_size = 16
  c.sequence.train_length_min = 2
  c.sequence.train_length_max = 4
  c.sequence.num_queries = 4
  c.model.mamba.n_layers = 1
  c.model.mamba.d_state = 4
  c.model.transformer.n_layers = 1
  c.eval.lengths = (1, 2)
  c.eval.num_examples = 8
  c.eval.batch_size = 8
  c.eval.grid_lengths = (2,)
  c.eval.grid_images = 1
  c.eval.select = select
  c.eval.eval_every_steps = 2
  c.eval.select_examples = 8
  return c


@pytest.fixture
def scripted(monkeypatch):
  """Replaces the validation scores by a table {model: {step: score}} and records what the
  final evaluation receives."""
  table, evaluated = {}, []

  def scores(self, state):
    step = int(jax.device_get(state["step"]))
    return {name: table[name][step] for name in self.names}

  monkeypatch.setattr(study_a.Task, "validation_scores", scores)
  monkeypatch.setattr(
    study_a.Task, "evaluate", lambda self, state, workdir: evaluated.append(state)
  )
  return table, evaluated


def checkpoint_params(workdir, step, like):
  checkpointer = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), 1)
  try:
    return checkpointer.restore(like, step)["params"]
  finally:
    checkpointer.close()


def assert_same(params, expected):
  leaves, expected_leaves = jax.tree.leaves(params), jax.tree.leaves(expected)
  assert len(leaves) == len(expected_leaves)
  for a, b in zip(leaves, expected_leaves):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_each_model_is_evaluated_at_its_best_step(scripted, data_dir, tmp_path):
  table, evaluated = scripted
  table["mamba"] = {2: 0.5, 4: 0.2, 6: 0.3}
  table["transformer"] = {2: 0.1, 4: 0.4, 6: float("nan")}
  workdir = str(tmp_path / "run")
  final = train.train_and_evaluate(tiny_config(data_dir, 6), workdir)
  (state,) = evaluated
  assert_same(state["params"]["mamba"], checkpoint_params(workdir, 4, final)["mamba"])
  assert_same(state["params"]["transformer"], checkpoint_params(workdir, 2, final)["transformer"])
  with pytest.raises(AssertionError):  # the last state differs from the best one
    assert_same(state["params"]["mamba"], final["params"]["mamba"])
  best = selection.BestCheckpoints(os.path.join(workdir, selection.BEST_DIR))
  assert best.best("mamba") == (4, pytest.approx(0.2))
  assert best.best("transformer") == (2, pytest.approx(0.1))
  best.close()


def test_resume_keeps_the_best_of_the_earlier_run(scripted, data_dir, tmp_path):
  table, evaluated = scripted
  table["mamba"] = {2: 0.3, 4: 0.9, 6: 0.5, 8: 0.4}
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(tiny_config(data_dir, 4, models=("mamba",)), workdir)
  final = train.train_and_evaluate(tiny_config(data_dir, 8, models=("mamba",)), workdir)
  state = evaluated[-1]
  assert_same(state["params"]["mamba"], checkpoint_params(workdir, 2, final)["mamba"])
  best = selection.BestCheckpoints(os.path.join(workdir, selection.BEST_DIR))
  assert best.best("mamba") == (2, pytest.approx(0.3))
  best.close()


def test_last_selection_evaluates_the_final_state(scripted, data_dir, tmp_path):
  _, evaluated = scripted
  workdir = str(tmp_path / "run")
  config = tiny_config(data_dir, 2, select="last", models=("mamba",))
  final = train.train_and_evaluate(config, workdir)
  assert_same(evaluated[0]["params"], final["params"])
  assert not os.path.exists(os.path.join(workdir, selection.BEST_DIR))


def test_unknown_select_mode_fails_at_start(data_dir, tmp_path):
  with pytest.raises(ValueError, match="config.eval.select"):
    train.train_and_evaluate(tiny_config(data_dir, 2, select="first"), str(tmp_path))


def test_real_validation_scores_are_finite_per_model(data_dir):
  config = tiny_config(data_dir, 2)
  from experiments import parallel

  task = study_a.Task(config, parallel.make_mesh())
  scores = task.validation_scores(task.init_state(jax.random.PRNGKey(0)))
  assert set(scores) == {"mamba", "transformer"}
  assert all(np.isfinite(s) and s > 0 for s in scores.values())
  assert len(task._selection_images) == 8
