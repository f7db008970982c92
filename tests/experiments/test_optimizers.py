"""Optimiser construction from config: names, schedules, clipping, the weight-decay mask."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments import optimizers


def _config(**overrides):
  c = ml_collections.ConfigDict(
    dict(
      name="adamw",
      learning_rate=1e-2,
      schedule="constant",
      warmup_steps=0,
      end_learning_rate_factor=0.0,
      weight_decay=0.1,
      grad_clip_norm=0.0,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
    )
  )
  c.update(overrides)
  return c


PARAMS = {
  "mixer": {
    "A_log": jnp.ones((4, 2)),
    "D": jnp.ones((4,)),
    "in_proj": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones((4,))},
  }
}


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_every_optimizer_takes_a_step(name):
  tx = optimizers.make_optimizer(_config(name=name, weight_decay=0.0), 10, PARAMS)
  grads = jax.tree_util.tree_map(jnp.ones_like, PARAMS)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  assert all(float(jnp.abs(u).sum()) > 0 for u in jax.tree_util.tree_leaves(updates))


def test_weight_decay_spares_A_log_D_and_biases():
  tx = optimizers.make_optimizer(_config(learning_rate=1.0), 10, PARAMS)
  zero = jax.tree_util.tree_map(jnp.zeros_like, PARAMS)
  updates, _ = tx.update(zero, tx.init(PARAMS), PARAMS)
  assert float(jnp.abs(updates["mixer"]["in_proj"]["kernel"]).sum()) > 0  # decays
  mixer = updates["mixer"]
  for leaf in (mixer["A_log"], mixer["D"], mixer["in_proj"]["bias"]):
    np.testing.assert_array_equal(leaf, 0.0)


def test_clipping_bounds_the_update_norm():
  tx = optimizers.make_optimizer(
    _config(name="adam", weight_decay=0.0, grad_clip_norm=1.0, learning_rate=1.0), 10, PARAMS
  )
  assert isinstance(tx, optax.GradientTransformation)
  clip_only = optax.clip_by_global_norm(1.0)
  grads = jax.tree_util.tree_map(lambda p: 100 * jnp.ones_like(p), PARAMS)
  clipped, _ = clip_only.update(grads, clip_only.init(PARAMS))
  assert float(optax.tree.norm(clipped)) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(
  "schedule,expected",
  [
    ("constant", [1.0, 1.0, 1.0]),
    ("warmup_constant", [0.0, 1.0, 1.0]),
  ],
)
def test_schedules(schedule, expected):
  fn = optimizers.make_schedule(_config(learning_rate=1.0, schedule=schedule, warmup_steps=5), 20)
  np.testing.assert_allclose([fn(0), fn(5), fn(19)], expected, atol=1e-6)


def test_cosine_schedules_decay_to_the_end_factor():
  for schedule in ("cosine", "warmup_cosine"):
    fn = optimizers.make_schedule(
      _config(learning_rate=1.0, schedule=schedule, warmup_steps=2, end_learning_rate_factor=0.1),
      20,
    )
    assert float(fn(20)) == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("name", "sgd", "config.optimizer.name = 'sgd'"),
    ("schedule", "linear", "config.optimizer.schedule = 'linear'"),
  ],
)
def test_bad_names_are_refused(field, value, message):
  with pytest.raises(ValueError, match=message):
    optimizers.make_optimizer(_config(**{field: value}), 10, PARAMS)


def test_adam_with_weight_decay_is_refused():
  with pytest.raises(ValueError, match="weight_decay must be 0 with adam"):
    optimizers.make_optimizer(_config(name="adam"), 10, PARAMS)


def _demo_optimizer(name):
  """Study A's digits (demo) optimiser settings with another optimiser name."""
  from experiments.studies.length_generalisation.configs import digits

  config = digits.get_config()
  config.optimizer.name = name
  return config.optimizer, config.num_train_steps


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_every_optimizer_moves_a_zero_initialised_vector(name):
  """A constant gradient on a vector that starts at 0 moves it by at least 0.1 x the summed
  learning rate over the demo's 1000 steps (optax.lamb moves it by about 1.5e-4)."""
  config, steps = _demo_optimizer(name)
  params = {"bias": jnp.zeros((4,))}
  grads = {"bias": jnp.full((4,), -0.5)}
  tx = optimizers.make_optimizer(config, steps, params)

  def body(carry, _):
    params, state = carry
    updates, state = tx.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
  schedule = optimizers.make_schedule(config, steps)
  summed = float(sum(schedule(step) for step in range(steps)))
  assert summed > 1.0
  assert float(jnp.min(params["bias"])) >= 0.1 * summed


def test_lamb_scales_matrices_by_the_trust_ratio_per_layer_and_spares_vectors():
  config = _config(name="lamb", weight_decay=0.0, learning_rate=0.1)
  key = jax.random.split(jax.random.key(0), 4)
  kernel = jax.random.normal(key[0], (3, 4))
  stacked = jax.random.normal(key[1], (2, 3, 4)) * jnp.array([1.0, 5.0])[:, None, None]
  params = {
    "layer": {"kernel": kernel, "bias": jnp.ones((4,))},
    "stacked_layers": {"kernel": stacked, "alpha": jnp.zeros((2, 4))},
  }
  grads = jax.tree_util.tree_map(lambda p: jax.random.normal(key[2], p.shape), params)
  tx = optimizers.make_optimizer(config, 10, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first update is lr * sign(g) (up to eps); the trust ratio rescales it to
  # lr * ||param|| for each matrix and each layer of a stacked one.
  adam = jax.tree_util.tree_map(lambda g: -0.1 * jnp.sign(g), grads)
  np.testing.assert_allclose(
    jnp.linalg.norm(updates["layer"]["kernel"]), 0.1 * jnp.linalg.norm(kernel), rtol=1e-5
  )
  for layer in range(2):
    np.testing.assert_allclose(
      jnp.linalg.norm(updates["stacked_layers"]["kernel"][layer]),
      0.1 * jnp.linalg.norm(stacked[layer]),
      rtol=1e-5,
    )
  np.testing.assert_allclose(updates["layer"]["bias"], adam["layer"]["bias"], rtol=1e-5)
  np.testing.assert_allclose(
    updates["stacked_layers"]["alpha"], adam["stacked_layers"]["alpha"], rtol=1e-5
  )


def test_study_a_configs_use_the_papers_effective_optimizer():
  from experiments.studies.length_generalisation.configs import digits, omniglot

  for config in (digits.get_config(), omniglot.get_config()):
    optimizer = config.optimizer
    assert (optimizer.name, optimizer.eps, optimizer.grad_clip_norm) == ("adam", 1e-6, 1.0)
    assert optimizer.weight_decay == 0.0
  assert omniglot.get_config().optimizer.learning_rate == 3e-4
