"""Side-by-side training: one optimiser per model, each step equal to training it alone."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from experiments import optimizers
from experiments.side_by_side import SideBySide, model_names


class _Lines(SideBySide):
  """Two linear models of different widths regressing y = 2 x."""

  def build(self, name, rng):
    return nnx.Linear(1, 1 if name == "narrow" else 3, rngs=nnx.Rngs(rng))

  def loss(self, model, batch):
    return jnp.mean(jnp.square(model(batch["x"]) - 2 * batch["x"]))


def _config(models=("narrow", "wide")):
  return ml_collections.ConfigDict(
    {
      "models": models,
      "num_train_steps": 10,
      "optimizer": {
        "name": "adam",
        "learning_rate": 0.1,
        "schedule": "constant",
        "warmup_steps": 0,
        "end_learning_rate_factor": 0.0,
        "weight_decay": 0.0,
        "grad_clip_norm": 0.0,
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
      },
    }
  )


def test_model_names_parse_and_validate():
  assert model_names(_config(("narrow", "wide")), ("narrow", "wide")) == ["narrow", "wide"]
  for bad in ((), ("narrow", "deep"), ("wide", "wide"), "narrow,wide"):
    with pytest.raises(ValueError, match="config.models"):
      model_names(_config(bad), ("narrow", "wide"))


def test_each_model_steps_as_if_trained_alone():
  config = _config()
  task = _Lines(config, ["narrow", "wide"])
  assert task.graphdef("wide") is not None  # known before init_state
  state = task.init_state(jax.random.key(0))
  batch = {"x": jnp.linspace(0.5, 2, 8)[:, None]}  # non-zero mean: no ~0 gradients
  new_state, metrics = jax.jit(task.train_step)(state, batch)
  assert set(metrics) == {"loss", "loss_narrow", "loss_wide"}
  np.testing.assert_allclose(metrics["loss"], (metrics["loss_narrow"] + metrics["loss_wide"]) / 2)
  assert int(new_state["step"]) == 1
  for name in ("narrow", "wide"):
    params = state["params"][name]
    tx = optimizers.make_optimizer(config.optimizer, config.num_train_steps, params)
    loss_fn = lambda p, name=name: task.loss(nnx.merge(task.graphdef(name), p), batch)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    expected = optax.apply_updates(params, updates)
    np.testing.assert_allclose(metrics[f"loss_{name}"], loss, rtol=1e-6)
    for got, want in zip(jax.tree.leaves(new_state["params"][name]), jax.tree.leaves(expected)):
      np.testing.assert_allclose(got, want, rtol=1e-6)


class _Budgets(_Lines):
  """The narrow model stops after 2 of the run's 4 steps."""

  def train_steps(self, name):
    return 2 if name == "narrow" else self.config.num_train_steps


def test_a_model_past_its_budget_is_frozen_and_the_others_train_on():
  config = _config()
  config.num_train_steps = 4
  task = _Budgets(config, ["narrow", "wide"])
  assert task.num_train_steps == 4
  alone = _Lines(_config(("wide",)), ["wide"])  # the wide model's schedule is unchanged
  state = task.init_state(jax.random.key(0))
  reference = alone.optimizer.init_state({"wide": state["params"]["wide"]})
  batch = {"x": jnp.linspace(0.5, 2, 8)[:, None]}
  train_step, reference_step = jax.jit(task.train_step), jax.jit(alone.train_step)
  history = []
  for _ in range(4):
    state, metrics = train_step(state, batch)
    reference, _ = reference_step(reference, batch)
    history.append((state["params"]["narrow"], metrics))
  narrow = [jax.tree.leaves(p) for p, _ in history]
  assert not np.allclose(narrow[0][0], narrow[1][0])  # trained at steps 0 and 1
  for later in narrow[2:]:  # frozen from step 2 on
    for got, want in zip(later, narrow[1]):
      np.testing.assert_array_equal(got, want)
  assert np.isnan(history[2][1]["loss_narrow"]) and np.isfinite(history[1][1]["loss_narrow"])
  assert "loss_narrow" in task.logged_metrics(2, history[1][1])  # after steps 0 and 1: logged
  assert set(task.logged_metrics(3, history[2][1])) == set(history[2][1]) - {"loss_narrow"}
  assert float(history[3][1]["loss"]) == float(history[3][1]["loss_wide"])
  for got, want in zip(
    jax.tree.leaves(state["params"]["wide"]), jax.tree.leaves(reference["params"]["wide"])
  ):
    np.testing.assert_allclose(got, want, rtol=1e-6)
