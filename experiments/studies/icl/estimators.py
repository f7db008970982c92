"""Classical in-context baselines for study B (docs/design.md section 6B), as in Garg et al.
2022.

Every estimator maps prompts xs (batch, n, d), ys (batch, n) to predictions (batch, n) where
position i uses only the i previous pairs (x_j, y_j), j < i, and position 0 predicts 0. They run
in float64 numpy on the host: the closed-form ones are vectorised over prompts; the scikit-learn
and XGBoost ones fit one model per prompt and position (n * batch fits: about a minute for
1280 prompts of 28 points, and an hour or more for XGBoost at 1280 prompts of 250 points, hence
the evaluation's separate prompt count for these). gd_2nn (gd_network.py) trains a network per
prompt and position in JAX.
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from sklearn.tree import DecisionTreeRegressor

from experiments.studies.icl.gd_network import gd_2nn

LASSO_ALPHA = 0.01
NEIGHBOURS = 3
TREE_DEPTH = 4


def _prompts(xs, ys):
  xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
  if xs.ndim != 3 or ys.shape != xs.shape[:2]:
    raise ValueError(f"Expected xs (batch, n, d) and ys (batch, n); got {xs.shape}, {ys.shape}.")
  return xs, ys


def least_squares(xs, ys):
  """Minimum-norm least squares (pseudo-inverse): exact on noiseless linear data once i >= d."""
  xs, ys = _prompts(xs, ys)
  predictions = np.zeros(ys.shape)
  for i in range(1, xs.shape[1]):
    w = np.linalg.pinv(xs[:, :i]) @ ys[:, :i, None]  # (batch, d, 1)
    predictions[:, i] = np.einsum("bd,bd->b", xs[:, i], w[..., 0])
  return predictions


def averaging(xs, ys):
  """w = mean_j y_j x_j (the least-squares solution when E[x x^T] = I), then <w, x_i>."""
  xs, ys = _prompts(xs, ys)
  sums = np.cumsum(xs * ys[..., None], axis=1)  # sums[:, i] covers j <= i.
  counts = np.arange(1, xs.shape[1])[None, :, None]
  w = sums[:, :-1] / counts  # Row i - 1: the mean over j < i.
  predictions = np.zeros(ys.shape)
  predictions[:, 1:] = np.einsum("bnd,bnd->bn", xs[:, 1:], w)
  return predictions


def knn3(xs, ys, neighbours=NEIGHBOURS):
  """Mean y of the `neighbours` nearest previous x (Euclidean; fewer while fewer exist)."""
  xs, ys = _prompts(xs, ys)
  n = xs.shape[1]
  distances = np.sum(np.square(xs[:, :, None] - xs[:, None, :]), axis=-1)  # (batch, i, j)
  previous = np.arange(n)[None, :] < np.arange(n)[:, None]  # j < i
  distances = np.where(previous, distances, np.inf)
  nearest = np.argsort(distances, axis=-1, kind="stable")[..., :neighbours]  # (batch, n, k)
  valid = np.arange(neighbours)[None, :] < np.arange(n)[:, None]  # (n, k): k-th exists when k < i.
  chosen = np.take_along_axis(ys[:, None, :], nearest, axis=-1)
  counts = np.maximum(valid.sum(-1), 1)
  return np.sum(np.where(valid, chosen, 0.0), axis=-1) / counts


def _fit_each_prefix(xs, ys, make_model):
  """Fits make_model() on the first i pairs of each prompt and predicts x_i, for i >= 1."""
  xs, ys = _prompts(xs, ys)
  predictions = np.zeros(ys.shape)
  for b in range(xs.shape[0]):
    for i in range(1, xs.shape[1]):
      model = make_model().fit(xs[b, :i], ys[b, :i])
      predictions[b, i] = model.predict(xs[b, i : i + 1])[0]
  return predictions


def lasso(xs, ys, alpha=LASSO_ALPHA):
  """Lasso without intercept (scikit-learn's objective: |y - Xw|^2 / (2 i) + alpha |w|_1)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # Few points: the fit is still usable.
    return _fit_each_prefix(
      xs, ys, lambda: Lasso(alpha=alpha, fit_intercept=False, max_iter=100_000)
    )


def tree(xs, ys, max_depth=TREE_DEPTH):
  """A greedy (CART) regression tree of the task's depth."""
  return _fit_each_prefix(
    xs, ys, lambda: DecisionTreeRegressor(max_depth=max_depth, random_state=0)
  )


def tree_unbounded(xs, ys):
  """A greedy (CART) regression tree grown until its leaves are pure, as Garg et al.'s
  DecisionTreeModel(max_depth=None)."""
  return tree(xs, ys, max_depth=None)


def xgboost(xs, ys):
  """Gradient-boosted trees with XGBoost's default settings, as Garg et al.'s baseline
  (XGBRegressor(); one thread per fit: the fits are tiny and many)."""
  from xgboost import XGBRegressor  # Imported here: loading it costs a second on every import.

  return _fit_each_prefix(xs, ys, lambda: XGBRegressor(n_jobs=1, random_state=0))


ESTIMATORS = {
  "least_squares": least_squares,
  "averaging": averaging,
  "knn3": knn3,
  "lasso": lasso,
  "tree": tree,
  "tree_unbounded": tree_unbounded,
  "xgboost": xgboost,
  "gd_2nn": gd_2nn,  # A 2-layer ReLU network trained by Adam per prefix (gd_network.py).
}


def get_estimator(name):
  if name not in ESTIMATORS:
    raise ValueError(f"Unknown baseline {name!r}; expected one of {sorted(ESTIMATORS)}.")
  return ESTIMATORS[name]
