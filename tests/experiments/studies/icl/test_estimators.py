"""Study-B baselines: each against its definition, causality, behaviour on the tasks."""

import jax
import numpy as np
import pytest
from sklearn.tree import DecisionTreeRegressor

from experiments.studies.icl import estimators as icl_estimators
from experiments.studies.icl.estimators import ESTIMATORS, get_estimator
from experiments.studies.icl.function_classes import icl_batch, normalised_squared_error

D = 20


def _task(name, n_points, batch_size, seed=1, **kwargs):
  return jax.tree.map(
    np.asarray, icl_batch(jax.random.key(seed), name, n_points, batch_size=batch_size, **kwargs)
  )


def _errors(name, predictions, batch, d_active=D):
  return np.asarray(normalised_squared_error(predictions, batch["ys"], name, d_active))


@pytest.fixture(scope="module")
def linear():
  """300 noiseless linear-regression prompts of 41 points in R^20."""
  return _task("linear_regression", 41, 300)


def _small_problem(seed=0, batch=3, n=7, d=4):
  rng = np.random.default_rng(seed)
  return rng.standard_normal((batch, n, d)), rng.standard_normal((batch, n))


def test_registry_names():
  assert set(ESTIMATORS) == {
    "least_squares",
    "averaging",
    "knn3",
    "lasso",
    "tree",
    "tree_unbounded",
    "xgboost",
    "gd_2nn",
  }
  assert get_estimator("knn3") is icl_estimators.knn3
  with pytest.raises(ValueError, match="Unknown baseline"):
    get_estimator("gradient_boosting")


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_prediction_uses_only_previous_points(name):
  xs, ys = _small_problem(n=6, d=3)
  predictions = get_estimator(name)(xs, ys)
  assert predictions.shape == ys.shape
  np.testing.assert_array_equal(predictions[:, 0], 0.0)
  # Change y_3.. and x_4..: predictions at positions 0..3 (which see pairs 0..2, and x_3) stay.
  xs2, ys2 = xs.copy(), ys.copy()
  ys2[:, 3:] += 5.0
  xs2[:, 4:] *= -2.0
  changed = get_estimator(name)(xs2, ys2)
  np.testing.assert_allclose(changed[:, :4], predictions[:, :4], rtol=1e-9, atol=1e-12)
  assert not np.allclose(changed[:, 4:], predictions[:, 4:])


def test_least_squares_is_minimum_norm_solution_on_each_prefix():
  xs, ys = _small_problem()
  predictions = icl_estimators.least_squares(xs, ys)
  for b in range(xs.shape[0]):
    for i in range(1, xs.shape[1]):
      w = np.linalg.lstsq(xs[b, :i], ys[b, :i], rcond=None)[0]  # Minimum norm when i < d.
      np.testing.assert_allclose(predictions[b, i], xs[b, i] @ w, rtol=1e-8, atol=1e-10)


def test_averaging_matches_definition():
  xs, ys = _small_problem()
  predictions = icl_estimators.averaging(xs, ys)
  for b in range(xs.shape[0]):
    for i in range(1, xs.shape[1]):
      w = np.mean(xs[b, :i] * ys[b, :i, None], axis=0)
      np.testing.assert_allclose(predictions[b, i], xs[b, i] @ w, rtol=1e-10)


def test_knn3_matches_definition():
  xs, ys = _small_problem(n=9)
  predictions = icl_estimators.knn3(xs, ys)
  for b in range(xs.shape[0]):
    for i in range(1, xs.shape[1]):
      distances = np.linalg.norm(xs[b, :i] - xs[b, i], axis=1)
      nearest = np.argsort(distances)[:3]
      np.testing.assert_allclose(predictions[b, i], ys[b, nearest].mean(), rtol=1e-12)
  # Fewer than 3 previous points: their mean.
  np.testing.assert_allclose(predictions[:, 1], ys[:, 0])
  np.testing.assert_allclose(predictions[:, 2], ys[:, :2].mean(1))


def test_least_squares_exact_once_points_reach_d(linear):
  errors = _errors(
    "linear_regression", icl_estimators.least_squares(linear["xs"], linear["ys"]), linear
  )
  assert errors[:, D:].max() < 1e-6
  # Below d the minimum-norm solution recovers the span of i points: error ~ 1 - i / d.
  positions = np.arange(5, 16)
  np.testing.assert_allclose(errors[:, positions].mean(), np.mean(1 - positions / D), atol=0.05)


def test_least_squares_exact_past_the_active_dimension():
  batch = _task("linear_regression", 12, 100, d_active=5)
  errors = _errors(
    "linear_regression", icl_estimators.least_squares(batch["xs"], batch["ys"]), batch, d_active=5
  )
  assert errors[:, 5:].max() < 1e-6
  assert errors[:, 2].mean() > 0.3


def test_averaging_and_knn_beat_predicting_zero(linear):
  zero = _errors("linear_regression", np.zeros_like(linear["ys"]), linear)[:, 36:].mean()
  averaging = _errors(
    "linear_regression", icl_estimators.averaging(linear["xs"], linear["ys"]), linear
  )
  knn = _errors("linear_regression", icl_estimators.knn3(linear["xs"], linear["ys"]), linear)
  assert 0.9 < zero < 1.1
  assert averaging[:, 36:].mean() < 0.75 and knn[:, 36:].mean() < 0.85
  # Averaging's error at i points is (d + 1) / i in expectation (Var of x x^T w over i draws).
  positions = np.arange(36, 41)
  np.testing.assert_allclose(averaging[:, positions].mean(), np.mean((D + 1) / positions), rtol=0.2)


def test_lasso_recovers_sparse_weights_before_least_squares_can():
  batch = _task("sparse_linear_regression", 30, 4)
  lasso = _errors("sparse_linear_regression", icl_estimators.lasso(batch["xs"], batch["ys"]), batch)
  least_squares = _errors(
    "sparse_linear_regression", icl_estimators.least_squares(batch["xs"], batch["ys"]), batch
  )
  assert lasso[:, 20:].mean() < 0.01
  assert lasso[:, 12:20].mean() < 0.05 < least_squares[:, 12:20].mean()


def test_trees_fit_a_decision_tree_task_better_than_zero():
  batch = _task("decision_tree", 81, 12, seed=0, d=5)
  zero = _errors("decision_tree", np.zeros_like(batch["ys"]), batch, 5)
  tree = _errors("decision_tree", icl_estimators.tree(batch["xs"], batch["ys"]), batch, 5)
  assert tree[:, 60:].mean() < 0.7 * zero[:, 60:].mean()
  few = slice(0, 4)  # XGBoost fits 100 trees per position: a few prompts keep it to ~7 s.
  boosted = icl_estimators.xgboost(batch["xs"][few], batch["ys"][few])
  boosted = np.square(boosted - batch["ys"][few])
  assert boosted[:, 60:].mean() < 0.7 * zero[few, 60:].mean()


def test_unbounded_tree_is_a_pure_leaved_cart_tree_on_each_prefix():
  """Against its definition: DecisionTreeRegressor(max_depth=None) fitted on the first i pairs;
  with distinct inputs its leaves are pure, so it reproduces every context label."""
  xs, ys = _small_problem(seed=2, batch=2, n=6, d=3)
  predictions = icl_estimators.tree_unbounded(xs, ys)
  for b in range(xs.shape[0]):
    for i in range(1, xs.shape[1]):
      fitted = DecisionTreeRegressor(max_depth=None, random_state=0).fit(xs[b, :i], ys[b, :i])
      assert predictions[b, i] == fitted.predict(xs[b, i : i + 1])[0]
      np.testing.assert_array_equal(fitted.predict(xs[b, :i]), ys[b, :i])
  depth_one = icl_estimators.tree(xs, ys, max_depth=1)
  assert not np.allclose(predictions[:, 3:], depth_one[:, 3:])


def test_gd_network_fits_a_relu_network_prompt():
  """Garg et al.'s GDModel: far better than predicting zero once the context holds enough
  points, and position 0 predicts 0; the result does not depend on the chunking."""
  batch = _task("relu_2nn", 30, 3, seed=0, d=5)
  # Chunks of 2 prompts (the second padded); the run on 2 prompts reuses that compilation.
  predictions = icl_estimators.gd_2nn(batch["xs"], batch["ys"], networks_per_chunk=60)
  np.testing.assert_array_equal(predictions[:, 0], 0.0)
  zero = _errors("relu_2nn", np.zeros_like(batch["ys"]), batch, 5)
  network = _errors("relu_2nn", predictions, batch, 5)
  assert network[:, 20:].mean() < 0.3 * zero[:, 20:].mean()
  first_two = icl_estimators.gd_2nn(batch["xs"][:2], batch["ys"][:2])
  np.testing.assert_allclose(first_two, predictions[:2], rtol=1e-6, atol=1e-6)


def test_rejects_bad_shapes():
  with pytest.raises(ValueError):
    icl_estimators.least_squares(np.zeros((2, 5)), np.zeros((2, 5)))
