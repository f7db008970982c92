"""Study B's evaluation outputs in workdir/eval/ (the "task" column names the function class):

icl_curves.csv (task, model, n_points, error, lo, hi, prompts, seeds): normalised squared error
of the prediction after n_points in-context examples, mean over evaluation prompts with a
bootstrap band (seeds = 1: experiments/studies/icl/sweep.py bands several seeds, from each run's
per-prompt errors in icl_errors.npz), for the trained models and the classical baselines on
the same prompts, up to config.eval.n_points - 1 examples (>= 2.5x the training horizon in the
shipped configs);
icl_<task>.png per evaluated task; icl_summary.csv / icl_summary.md (the error at the training
horizon and at the longest length); probing.csv (task, model, layer, depth, n_points, probe,
error) / probing.png (one panel per probe, error against normalised depth), for the trained
function class: after n_points = config.eval.probe_context in-context examples (the paper's
40; 0 means the training horizon's training points - 1), each layer's residual stream is
decoded through the final norm and read-out at fresh queries (one sequence per query) and at
the context's own x tokens, and probe is
  "decoded": the normalised error of the decoded predictions at the queries;
  "affine_1d": Grazzi et al.'s probe: per prompt, y ~ a * decoded + b (two scalars) fit by least
    squares on the last config.eval.probe_fit_points context positions (the layer's in-context
    predictions after n_points - fit .. n_points - 1 examples, paired with their true y), then
    applied to the decoded values at the queries;
  "weights" (linear tasks only): w_l, the per-prompt least-squares fit of the decoded predictions
    on the query inputs, scored as ||w_l - w||^2 / scale;
  "gd_iterate" (linear tasks only; models "gd" and "preconditioned_gd"): the reference curves of
    gradient descent run step by step on the same prompts' contexts (gd_iterates.py).
The task adds discretization.csv (experiments/learned_alpha.py).
"""

import csv
import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from experiments import parallel
from experiments.bootstrap import bootstrap_band
from experiments.studies.icl import function_classes, gd_iterates
from experiments.studies.icl.estimators import get_estimator
from mamba_jax import count_parameters

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

CURVES_CSV = "icl_curves.csv"
# Every curve's per-prompt errors, "<task>/<model>" -> (prompts, n_points): what a seed sweep
# (experiments/studies/icl/sweep.py) needs for a band over prompts and seeds.
ERRORS_NPZ = "icl_errors.npz"
SUMMARY_CSV = "icl_summary.csv"
SUMMARY_MD = "icl_summary.md"
PROBING_CSV = "probing.csv"
PROBING_PNG = "probing.png"
# Fitting one model (scikit-learn, XGBoost, a JAX network) per prompt and prefix is slow: these
# run on the first config.eval.slow_baseline_prompts prompts only.
SLOW_BASELINES = ("lasso", "tree", "tree_unbounded", "xgboost", "gd_2nn")


def _gather(x):
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def evaluation_prompts(task, class_name, n_prompts, n_points):
  """The first n_prompts prompts of the evaluation stream, as sharded batches (device arrays)."""
  batch_size = task.config.eval.batch_size
  return [
    task.prompts(task.eval_key, class_name, n_points, first, batch_size)
    for first in range(0, n_prompts, batch_size)
  ]


def _predict_fn(task, name):
  graphdef = task.graphdef(name)

  def predict(params, xs, ys):
    model = nnx.merge(graphdef, params)
    return function_classes.read_predictions(model(function_classes.make_prompt(xs, ys)))

  return jax.jit(predict, out_shardings=parallel.replicated(task.mesh))


def model_predictions(task, state, batches, n_prompts):
  """{model: (n_prompts, n_points) predictions} for every trained model."""
  predictions = {}
  for name in task.names:
    predict = _predict_fn(task, name)
    parts = [np.asarray(predict(state["params"][name], b["xs"], b["ys"])) for b in batches]
    predictions[name] = np.concatenate(parts)[:n_prompts]
  return predictions


def _layer_query_fn(task, name, n_context):
  """Each layer's decoded predictions after the same context, prompt b's first n_context pairs:
  at fresh queries, x_q for each later point q of that prompt, one sequence per q, and at the
  context's own x tokens (token 2i holds x_{i+1}; the output there is the prediction after i
  examples). Every query's sequence shares the context, so those come from the first query's
  (the models are causal): no extra forward pass."""
  graphdef = task.graphdef(name)

  def predict(params, xs, ys):
    model = nnx.merge(graphdef, params)
    batch, points, d = xs.shape
    queries = points - n_context
    context = function_classes.make_prompt(xs[:, :n_context], ys[:, :n_context])
    sequences = jnp.concatenate(
      [jnp.repeat(context[:, None], queries, axis=1), xs[:, n_context:, None]], axis=2
    )
    _, residuals = model(
      sequences.reshape(batch * queries, 2 * n_context + 1, d), return_residuals=True
    )
    at_queries = jnp.stack(
      [model.read_out_residual(r[:, -1:])[:, 0].reshape(batch, queries) for r in residuals]
    )
    first_query = [r.reshape(batch, queries, *r.shape[1:])[:, 0] for r in residuals]
    at_context = jnp.stack(
      [model.read_out_residual(r[:, : 2 * n_context : 2]) for r in first_query]
    )
    return at_queries, at_context

  return jax.jit(predict, out_shardings=parallel.replicated(task.mesh))


def layer_query_predictions(task, state, batches, n_prompts, n_context):
  """{model: {"queries": (n_layers + 1, n_prompts, queries), "context": (n_layers + 1,
  n_prompts, n_context)}}: each layer's decoded predictions (see _layer_query_fn)."""
  layers = {}
  for name in task.names:
    predict = _layer_query_fn(task, name, n_context)
    parts = [predict(state["params"][name], b["xs"], b["ys"]) for b in batches]
    layers[name] = {
      key: np.concatenate([np.asarray(p[i]) for p in parts], axis=1)[:, :n_prompts]
      for i, key in enumerate(("queries", "context"))
    }
  return layers


def host_prompts(batches, n_prompts):
  """xs, ys and the drawn functions of the batches, on every host, first n_prompts."""
  gathered = [jax.tree.map(_gather, b) for b in batches]
  return jax.tree.map(lambda *parts: np.concatenate(parts)[:n_prompts], *gathered)


def curve_rows(class_name, model, errors, config):
  """Rows of icl_curves.csv for one model: errors (prompts, n_points)."""
  mean, lo, hi = bootstrap_band(
    errors,
    seed=config.seed,
    level=config.eval.band_level,
    resamples=config.eval.bootstrap_resamples,
  )
  return band_rows(class_name, model, (mean, lo, hi), prompts=errors.shape[0], seeds=1)


def band_rows(class_name, model, band, prompts, seeds):
  """icl_curves.csv rows, one per number of in-context points, from band = (mean, lo, hi)."""
  mean, lo, hi = band
  return [
    {
      "task": class_name,
      "model": model,
      "n_points": i,
      "error": float(mean[i]),
      "lo": float(lo[i]),
      "hi": float(hi[i]),
      "prompts": prompts,
      "seeds": seeds,
    }
    for i in range(len(mean))
  ]


def baseline_errors(class_name, name, prompts, d_active, slow_prompts):
  count = slow_prompts if name in SLOW_BASELINES else len(prompts["ys"])
  xs, ys = prompts["xs"][:count], prompts["ys"][:count]
  predictions = get_estimator(name)(xs, ys)
  errors = function_classes.normalised_squared_error(predictions, ys, class_name, d_active)
  return np.asarray(errors)


def probe_context(task):
  """In-context examples before the probe's queries: config.eval.probe_context (the paper: 40),
  or the training horizon's training points - 1 when it is 0."""
  return task.config.eval.probe_context or task.training_points - 1


def check_probe_settings(evaluation, n_context):
  """The affine probe fits a slope and an intercept per prompt on the last
  evaluation.probe_fit_points of the n_context in-context examples (the training horizon):
  2 <= probe_fit_points <= n_context. Nothing to check when probing is off (probe_prompts 0)."""
  if not evaluation.probe_prompts:
    return
  fit = evaluation.probe_fit_points
  if isinstance(fit, bool) or not isinstance(fit, int) or not 2 <= fit <= n_context:
    raise ValueError(
      f"config.eval.probe_fit_points = {fit!r}; the affine probe fits y ~ a * decoded + b on the "
      f"last probe_fit_points of the {n_context} in-context examples at the training horizon, "
      f"so it needs an int in [2, {n_context}]"
    )


def affine_probe(fit_decoded, fit_ys, query_decoded):
  """Grazzi et al.'s probe, per prompt: y ~ a * decoded + b, fit by closed-form least squares on
  fit_decoded (prompts, fit) against fit_ys (prompts, fit), applied to query_decoded
  (prompts, queries). A prompt whose fit_decoded is constant has no slope to fit: a = 0,
  b = mean(fit_ys)."""
  fit_decoded = fit_decoded.astype(np.float64)
  origin = fit_decoded[:, :1]  # shifting by a fit value makes a constant row exactly zero
  x = fit_decoded - origin
  x_mean = x.mean(axis=1, keepdims=True)
  fit_ys = fit_ys.astype(np.float64)
  y_mean = fit_ys.mean(axis=1, keepdims=True)
  dx = x - x_mean
  sxx = np.sum(dx * dx, axis=1, keepdims=True)
  sxy = np.sum(dx * (fit_ys - y_mean), axis=1, keepdims=True)
  a = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), 0.0)
  return y_mean + a * (query_decoded.astype(np.float64) - origin - x_mean)


def probing_rows(task, layers, prompts, n_context, fit_points):
  """Per model, probe and layer, after n_context in-context examples (the training horizon),
  the normalised squared error of (probe column):
    "decoded": the layer's decoded predictions at the fresh queries;
    "affine_1d": affine_probe fit on the layer's decoded predictions at the last fit_points
      context positions (n_context - fit_points .. n_context - 1, the predictions after that
      many examples) against their true y, applied at the queries (Grazzi et al.);
    "weights" (only when the function has a weight vector w, i.e. linear tasks): w_l, the
      least-squares fit of the layer's predictions at the queries on the query inputs, scored
      as ||w_l - w||^2 / scale, its expected error on fresh isotropic inputs (a layer that
      implements a linear predictor scores as that predictor would).
  layers: {model: {"queries": (n_layers + 1, prompts, queries), "context": (n_layers + 1,
  prompts, n_context)}} (layer_query_predictions)."""
  name = task.function_class
  queries = prompts["xs"][:, n_context:].astype(np.float64)
  targets = prompts["ys"][:, n_context:].astype(np.float64)
  fit = slice(n_context - fit_points, n_context)
  fit_ys = prompts["ys"][:, fit].astype(np.float64)
  w = prompts["function"].get("w")
  scale = function_classes.error_scale(name, task.d)

  rows = []
  for model, decoded in layers.items():
    n_layers = max(decoded["queries"].shape[0] - 1, 1)
    errors = {"decoded": [], "affine_1d": []} | ({"weights": []} if w is not None else {})
    for predictions, context in zip(decoded["queries"], decoded["context"]):
      predictions = predictions.astype(np.float64)
      errors["decoded"].append(np.mean(np.square(predictions - targets)))
      affine = affine_probe(context[:, fit], fit_ys, predictions)
      errors["affine_1d"].append(np.mean(np.square(affine - targets)))
      if w is not None:
        probes = np.stack(
          [np.linalg.lstsq(x, p, rcond=None)[0] for x, p in zip(queries, predictions)]
        )
        errors["weights"].append(np.mean(np.sum(np.square(probes - w), axis=-1)))
    for probe, per_layer in errors.items():
      for layer, error in enumerate(per_layer):
        rows.append(
          {
            "task": name,
            "model": model,
            "layer": layer,
            "depth": layer / n_layers,
            "n_points": n_context,
            "probe": probe,
            "error": float(error / scale),
          }
        )
  return rows


def reference_rows(task, layers, prompts, n_context):
  """gd_iterates' rows on the probe prompts (linear tasks: the function has a weight vector),
  as many steps as the deepest probed model has layers; [] for the other tasks."""
  if "w" not in prompts["function"]:
    return []
  steps = max(decoded["queries"].shape[0] - 1 for decoded in layers.values())
  xs, ys = prompts["xs"], prompts["ys"]
  scale = function_classes.error_scale(task.function_class, task.d)
  rows, gamma = gd_iterates.reference_rows(
    task.function_class,
    xs[:, :n_context],
    ys[:, :n_context],
    xs[:, n_context:],
    ys[:, n_context:],
    steps,
    scale,
  )
  print(f"preconditioned gradient descent: gamma = {gamma:.3g}", flush=True)
  return rows


def write_csv(path, rows):
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def plot_curves(rows, class_name, training_points, trained, path):
  """Trained models solid, baselines dashed; bands shaded."""
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  models = dict.fromkeys(r["model"] for r in rows if r["task"] == class_name)
  for model in models:
    curve = [r for r in rows if r["task"] == class_name and r["model"] == model]
    n = [r["n_points"] for r in curve]
    style = "-" if model in trained else "--"
    (line,) = ax.plot(n, [r["error"] for r in curve], style, label=model, lw=1.6)
    ax.fill_between(
      n, [r["lo"] for r in curve], [r["hi"] for r in curve], color=line.get_color(), alpha=0.2, lw=0
    )
  ax.axvline(training_points - 1, color="0.5", ls=":", lw=1, label="training horizon")
  ax.set_ylim(0, 1.25)
  ax.set_xlabel("in-context examples")
  ax.set_ylabel("normalised squared error")
  ax.set_title(class_name.replace("_", " "))
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


PROBE_TITLES = {
  "decoded": "decoded: residual stream through final norm + read-out",
  "affine_1d": "affine_1d: per-prompt y ~ a decoded + b (Grazzi et al.)",
  "weights": "weights: per-prompt d-dim linear fit, ||w_l - w||^2",
}


def plot_probing(rows, path):
  """One panel per probe in rows: error against normalised depth, one line per model; the
  "gd_iterate" reference curves (if any) dashed in every panel."""
  references = [r for r in rows if r["probe"] == "gd_iterate"]
  probes = list(dict.fromkeys(r["probe"] for r in rows if r["probe"] != "gd_iterate"))
  fig, axes = plt.subplots(1, len(probes), figsize=(4.5 * len(probes), 3.6), squeeze=False)
  for probe, ax in zip(probes, axes[0]):
    for model in dict.fromkeys(r["model"] for r in rows if r["probe"] == probe):
      curve = [r for r in rows if r["model"] == model and r["probe"] == probe]
      ax.plot(
        [r["depth"] for r in curve], [r["error"] for r in curve], marker="o", ms=3, label=model
      )
    for model, color in zip(dict.fromkeys(r["model"] for r in references), ("0.2", "0.55")):
      curve = [r for r in references if r["model"] == model]
      ax.plot(
        [r["depth"] for r in curve],
        [r["error"] for r in curve],
        "--",
        color=color,
        marker="x",
        ms=3,
        label=f"{model} (step k at k / steps)",
      )
    ax.set_yscale("log")
    ax.set_xlabel("normalised depth (layer / layers)")
    ax.set_ylabel("normalised squared error")
    ax.set_title(PROBE_TITLES.get(probe, probe), fontsize=8)
  fig.suptitle(f"{rows[0]['task']}, after {rows[0]['n_points']} in-context examples", fontsize=9)
  axes[0, -1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def summary_rows(rows, training_points, parameters=None):
  """The error at the training horizon and at the longest evaluated length, per task and model;
  parameters: {trained model: parameter count} (baselines get ""), for a fair comparison."""
  parameters = parameters or {}
  out = []
  for class_name in dict.fromkeys(r["task"] for r in rows):
    for model in dict.fromkeys(r["model"] for r in rows if r["task"] == class_name):
      curve = {r["n_points"]: r for r in rows if r["task"] == class_name and r["model"] == model}
      horizon, longest = curve[training_points - 1], curve[max(curve)]
      out.append(
        {
          "task": class_name,
          "model": model,
          "horizon": training_points - 1,
          "error_at_horizon": horizon["error"],
          "lo_at_horizon": horizon["lo"],
          "hi_at_horizon": horizon["hi"],
          "longest": max(curve),
          "error_at_longest": longest["error"],
          "lo_at_longest": longest["lo"],
          "hi_at_longest": longest["hi"],
          "prompts": horizon["prompts"],
          "parameters": parameters.get(model, ""),
        }
      )
  return out


def summary_markdown(summary):
  lines = [
    "| task | model | parameters | error at horizon (n) | error at longest (n) | prompts |",
    "|---|---|---|---|---|---|",
  ]
  for r in summary:
    lines.append(
      f"| {r['task']} | {r['model']} | {r['parameters']} | {r['error_at_horizon']:.3f} "
      f"[{r['lo_at_horizon']:.3f}, {r['hi_at_horizon']:.3f}] ({r['horizon']}) | "
      f"{r['error_at_longest']:.3f} [{r['lo_at_longest']:.3f}, "
      f"{r['hi_at_longest']:.3f}] ({r['longest']}) | {r['prompts']} |"
    )
  return "\n".join(lines) + "\n"


def write(task, state, out_dir):
  """Evaluates every model and baseline on every class of config.eval.function_classes; returns
  the rows (checked settings: the task's construction)."""
  config = task.config
  evaluation = config.eval
  n_prompts, n_points = evaluation.num_prompts, evaluation.n_points
  os.makedirs(out_dir, exist_ok=True)
  rows, probing, errors_by_curve = [], [], {}
  for class_name in evaluation.function_classes:
    batches = evaluation_prompts(task, class_name, n_prompts, n_points)
    predictions = model_predictions(task, state, batches, n_prompts)
    prompts = host_prompts(batches, n_prompts)
    for model, prediction in predictions.items():
      errors = function_classes.normalised_squared_error(
        prediction, prompts["ys"], class_name, task.d
      )
      errors_by_curve[f"{class_name}/{model}"] = np.asarray(errors)
      rows += curve_rows(class_name, model, np.asarray(errors), config)
    if class_name == task.function_class and evaluation.probe_prompts:
      count, n_context = evaluation.probe_prompts, probe_context(task)
      check_probe_settings(evaluation, n_context)
      probe_batches = evaluation_prompts(
        task, class_name, count, n_context + evaluation.probe_queries
      )
      layers = layer_query_predictions(task, state, probe_batches, count, n_context)
      probed = host_prompts(probe_batches, count)
      probing = probing_rows(task, layers, probed, n_context, evaluation.probe_fit_points)
      probing += reference_rows(task, layers, probed, n_context)
    if jax.process_index() == 0:
      slow = min(evaluation.slow_baseline_prompts, n_prompts)
      for name in evaluation.baselines.get(class_name, ()):
        errors = baseline_errors(class_name, name, prompts, task.d, slow)
        errors_by_curve[f"{class_name}/{name}"] = errors
        rows += curve_rows(class_name, name, errors, config)
  if jax.process_index() == 0:
    write_csv(os.path.join(out_dir, CURVES_CSV), rows)
    np.savez(os.path.join(out_dir, ERRORS_NPZ), **errors_by_curve)
    for class_name in evaluation.function_classes:
      plot_curves(
        rows,
        class_name,
        task.training_points,
        task.names,
        os.path.join(out_dir, f"icl_{class_name}.png"),
      )
    parameters = {name: count_parameters(task.model(state, name)) for name in task.names}
    summary = summary_rows(rows, task.training_points, parameters)
    write_csv(os.path.join(out_dir, SUMMARY_CSV), summary)
    with open(os.path.join(out_dir, SUMMARY_MD), "w") as f:
      f.write(summary_markdown(summary))
    if probing:
      write_csv(os.path.join(out_dir, PROBING_CSV), probing)
      plot_probing(probing, os.path.join(out_dir, PROBING_PNG))
  return rows
