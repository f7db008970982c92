"""Study B's reference curves for the layer probes on linear regression (docs/design.md section 6B):
gradient descent and preconditioned gradient descent run step by step on each probe prompt, as
Grazzi et al.'s eval_icl_learning_curves.py (their Figure with GD and "GD++" beside the layers).

Per prompt, on its context (X, y) of n points: w_0 = 0, then
  w_{k+1} = w_k - eta (1/n) (X H)^T (X H w_k - y),  eta = 2 / (L + mu),
with L, mu the largest and smallest (clipped at 0) eigenvalues of X^T X / n, and the error of
iterate k is the squared error of x H w_k at the prompt's queries, over the task's scale (d for
linear regression, as the curves and the paper).
Gradient descent has H = I; preconditioned gradient descent H = I - gamma X^T X, with gamma the
value of GAMMAS whose last iterate has the lowest mean error on these prompts (the paper tuned
its gamma the same way, on a grid, for its 20 dimensions and 40 points; that value does not
carry over to other shapes). Iterate k is drawn at normalised depth k / steps, steps = the
deepest probed model's layer count, as the paper plots 24 iterations beside 24 Mamba layers.
"""

import numpy as np

# The preconditioner's gamma grid (0 = plain gradient descent).
GAMMAS = np.concatenate([[0.0], np.logspace(-5, 0, 101)])


def iterate_errors(context_xs, context_ys, query_xs, query_ys, steps, gamma=0.0):
  """(steps + 1, prompts) mean squared error of iterates 0..steps at the queries.

  context_xs (prompts, n, d), context_ys (prompts, n), query_xs (prompts, q, d), query_ys
  (prompts, q)."""
  x = np.asarray(context_xs, np.float64)
  y = np.asarray(context_ys, np.float64)
  xq = np.asarray(query_xs, np.float64)
  yq = np.asarray(query_ys, np.float64)
  prompts, n, d = x.shape
  gram = np.einsum("bni,bnj->bij", x, x)
  eigenvalues = np.linalg.eigvalsh(gram / n)
  step = 2.0 / (eigenvalues[:, -1] + np.maximum(eigenvalues[:, 0], 0.0))
  h = np.eye(d) - gamma * gram
  features, queries = x @ h, xq @ h
  w = np.zeros((prompts, d))
  errors = []
  for _ in range(steps + 1):
    errors.append(np.mean(np.square(np.einsum("bqd,bd->bq", queries, w) - yq), axis=1))
    residual = np.einsum("bnd,bd->bn", features, w) - y
    w = w - step[:, None] * np.einsum("bnd,bn->bd", features, residual) / n
  return np.stack(errors)


def best_gamma(context_xs, context_ys, query_xs, query_ys, steps):
  """The gamma of GAMMAS whose iterate `steps` has the lowest mean error on these prompts."""
  final = [
    np.mean(iterate_errors(context_xs, context_ys, query_xs, query_ys, steps, g)[-1])
    for g in GAMMAS
  ]
  return float(GAMMAS[int(np.nanargmin(final))])


def reference_rows(task_name, context_xs, context_ys, query_xs, query_ys, steps, scale):
  """(probing.csv rows, gamma): probe "gd_iterate", models "gd" and "preconditioned_gd", the
  mean error over scale of each iterate at depth k / steps; gamma: the preconditioner's."""
  gamma = best_gamma(context_xs, context_ys, query_xs, query_ys, steps)
  rows = []
  for model, g in (("gd", 0.0), ("preconditioned_gd", gamma)):
    errors = iterate_errors(context_xs, context_ys, query_xs, query_ys, steps, g)
    for k, per_prompt in enumerate(errors):
      rows.append(
        {
          "task": task_name,
          "model": model,
          "layer": k,
          "depth": k / steps,
          "n_points": context_xs.shape[1],
          "probe": "gd_iterate",
          "error": float(np.mean(per_prompt) / scale),
        }
      )
  return rows, gamma
