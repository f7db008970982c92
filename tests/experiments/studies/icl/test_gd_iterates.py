"""Study B's gradient-descent reference curves on known prompts."""

import numpy as np

from experiments.studies.icl import gd_iterates


def _prompts(prompts=64, n=10, queries=8, d=5):
  rng = np.random.default_rng(0)
  xs = rng.standard_normal((prompts, n + queries, d))
  w = rng.standard_normal((prompts, d))
  ys = np.einsum("bnd,bd->bn", xs, w)
  return xs[:, :n], ys[:, :n], xs[:, n:], ys[:, n:]


def test_gradient_descent_starts_at_zero_takes_the_papers_step_and_converges():
  context_xs, context_ys, query_xs, query_ys = _prompts()
  errors = gd_iterates.iterate_errors(context_xs, context_ys, query_xs, query_ys, steps=300)
  assert errors.shape == (301, 64)
  np.testing.assert_allclose(errors[0], np.mean(query_ys**2, axis=1))  # w_0 = 0
  # One step by hand for prompt 0: w_1 = 2 / (L + mu) X^T y / n.
  x, y = context_xs[0], context_ys[0]
  eigenvalues = np.linalg.eigvalsh(x.T @ x / 10)
  w1 = 2 / (eigenvalues[-1] + eigenvalues[0]) * x.T @ y / 10
  np.testing.assert_allclose(errors[1, 0], np.mean((query_xs[0] @ w1 - query_ys[0]) ** 2))
  assert errors[-1].max() < 1e-8  # noiseless, n >= d: it reaches the true w


def test_the_chosen_preconditioner_does_no_worse_than_plain_descent():
  prompts = _prompts()
  gamma = gd_iterates.best_gamma(*prompts, steps=3)
  assert gamma in gd_iterates.GAMMAS and gamma > 0
  plain = gd_iterates.iterate_errors(*prompts, steps=3)
  preconditioned = gd_iterates.iterate_errors(*prompts, steps=3, gamma=gamma)
  np.testing.assert_array_equal(preconditioned[0], plain[0])
  assert preconditioned[-1].mean() < plain[-1].mean()
  rows, row_gamma = gd_iterates.reference_rows("linear_regression", *prompts, steps=3, scale=5)
  assert row_gamma == gamma
  assert {(r["model"], r["layer"], r["depth"]) for r in rows} == {
    (m, k, k / 3) for m in ("gd", "preconditioned_gd") for k in range(4)
  }
  last = {r["model"]: r["error"] for r in rows if r["layer"] == 3}
  np.testing.assert_allclose(last["gd"], plain[-1].mean() / 5)
