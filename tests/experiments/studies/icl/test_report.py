"""Study B's report pieces on known inputs: curves with bands, the summary, and the probes."""

import csv
import types

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from experiments.studies.icl import function_classes
from experiments.studies.icl import report as icl_report


def _config():
  return ml_collections.ConfigDict(
    {"seed": 0, "eval": {"band_level": 0.9, "bootstrap_resamples": 200}}
  )


def test_curve_rows_hold_the_mean_inside_its_band():
  errors = np.random.default_rng(0).exponential(size=(300, 6))
  rows = icl_report.curve_rows("linear_regression", "mamba", errors, _config())
  assert [r["n_points"] for r in rows] == list(range(6))
  np.testing.assert_allclose([r["error"] for r in rows], errors.mean(0))
  for r in rows:
    assert r["lo"] < r["error"] < r["hi"] and r["prompts"] == 300
    assert r["hi"] - r["lo"] < 0.5  # ~3.3 standard errors of a mean of 300 unit exponentials


def test_summary_reads_the_training_horizon_and_the_longest_length():
  rows = []
  for model, base in (("mamba", 0.0), ("averaging", 1.0)):
    rows += [
      {
        "task": "t",
        "model": model,
        "n_points": i,
        "error": base + i,
        "lo": base + i - 0.1,
        "hi": base + i + 0.1,
        "prompts": 4,
      }
      for i in range(8)
    ]
  summary = icl_report.summary_rows(rows, training_points=4, parameters={"mamba": 123})
  assert [
    (
      s["model"],
      s["horizon"],
      s["error_at_horizon"],
      s["longest"],
      s["error_at_longest"],
      s["parameters"],
    )
    for s in summary
  ] == [("mamba", 3, 3.0, 7, 7.0, 123), ("averaging", 3, 4.0, 7, 8.0, "")]
  table = icl_report.summary_markdown(summary)
  assert "| t | mamba | 123 | 3.000 [2.900, 3.100] (3) | 7.000 [6.900, 7.100] (7) | 4 |" in table


def _linear_prompts(n_points, prompts, d=5, seed=7):
  """Host prompts of a linear function, xs and w ~ N(0, I) (no device work: fast)."""
  rng = np.random.default_rng(seed)
  xs = rng.standard_normal((prompts, n_points, d)).astype(np.float32)
  w = rng.standard_normal((prompts, d)).astype(np.float32)
  return {"xs": xs, "ys": np.einsum("pnd,pd->pn", xs, w), "function": {"w": w}}


def _by_probe(rows):
  return {(r["model"], r["probe"], r["layer"]): r["error"] for r in rows}


def test_weights_and_decoded_probes_score_zero_for_the_true_function_and_one_for_zero():
  d, n_context, queries, prompts = 5, 3, 12, 400
  batch = function_classes.icl_batch(
    jax.random.key(7), "linear_regression", n_context + queries, batch_size=prompts, d=d
  )
  batch = jax.tree.map(np.asarray, batch)
  task = types.SimpleNamespace(d=d, function_class="linear_regression")
  truth = batch["ys"][:, n_context:]
  context = batch["ys"][:, :n_context]
  noise = 0.5 * np.random.default_rng(0).standard_normal(truth.shape)
  layers = {
    "oracle": {
      "queries": np.stack([np.zeros_like(truth), truth]),
      "context": np.stack([np.zeros_like(context), context]),
    },
    "noisy": {"queries": truth[None] + noise, "context": context[None]},
  }
  rows = icl_report.probing_rows(task, layers, batch, n_context, fit_points=2)
  assert list(rows[0]) == ["task", "model", "layer", "depth", "n_points", "probe", "error"]
  assert {r["probe"] for r in rows} == {"decoded", "affine_1d", "weights"}
  depth = {(r["model"], r["layer"]): r["depth"] for r in rows}
  assert depth[("oracle", 1)] == 1.0 and depth[("oracle", 0)] == 0.0
  assert {r["n_points"] for r in rows} == {n_context}
  errors = _by_probe(rows)
  assert errors[("oracle", "decoded", 1)] < 1e-10
  assert errors[("oracle", "weights", 1)] < 1e-10
  assert errors[("oracle", "affine_1d", 1)] < 1e-10
  np.testing.assert_allclose(errors[("oracle", "weights", 0)], 1.0, rtol=0.15)
  np.testing.assert_allclose(errors[("oracle", "decoded", 0)], 1.0, rtol=0.15)
  # Noise of variance 0.25 on 12 queries: the decoding scores 0.25 / d, the weights probe, which
  # averages the noise over the queries, about 0.25 / d * d / (12 - d - 1).
  np.testing.assert_allclose(errors[("noisy", "decoded", 0)], 0.25 / d, rtol=0.15)
  np.testing.assert_allclose(errors[("noisy", "weights", 0)], 0.25 / (queries - d - 1), rtol=0.2)


def test_affine_probe_recovers_an_exact_affine_relation():
  d, n_context, queries, prompts, fit = 5, 8, 6, 50, 4
  batch = _linear_prompts(n_context + queries, prompts, d)
  task = types.SimpleNamespace(d=d, function_class="linear_regression")
  ys = batch["ys"]
  layers = {
    "m": {
      "queries": (ys[None, :, n_context:] - 3) / 2,
      "context": (ys[None, :, :n_context] - 3) / 2,
    }
  }
  errors = _by_probe(icl_report.probing_rows(task, layers, batch, n_context, fit))
  assert errors[("m", "affine_1d", 0)] < 1e-10
  # (y - 3) / 2 against y: E[(y + 3)^2 / 4] / d = (Var(y) + 9) / (4 d) ~ 0.7, far from 0.
  expected = np.mean(np.square((ys[:, n_context:] - 3) / 2 - ys[:, n_context:])) / d
  np.testing.assert_allclose(errors[("m", "decoded", 0)], expected, rtol=1e-6)
  assert errors[("m", "decoded", 0)] > 0.4


def test_affine_probe_matches_polyfit_on_the_last_fit_positions():
  d, n_context, queries, fit = 5, 8, 6, 4
  batch = _linear_prompts(n_context + queries, 1, d)
  task = types.SimpleNamespace(d=d, function_class="linear_regression")
  rng = np.random.default_rng(1)
  ys = batch["ys"][0].astype(np.float64)
  # A noisy affine relation, different before the fit window: only positions 4..7 may count.
  decoded = 0.7 * ys + 0.4 + 0.3 * rng.standard_normal(ys.shape)
  decoded[: n_context - fit] = rng.standard_normal(n_context - fit) * 10
  decoded = decoded.astype(np.float32)
  a, b = np.polyfit(decoded[n_context - fit : n_context], ys[n_context - fit : n_context], 1)
  expected = np.mean(np.square(a * decoded[n_context:] + b - ys[n_context:])) / d
  layers = {
    "m": {"queries": decoded[None, None, n_context:], "context": decoded[None, None, :n_context]}
  }
  errors = _by_probe(icl_report.probing_rows(task, layers, batch, n_context, fit))
  np.testing.assert_allclose(errors[("m", "affine_1d", 0)], expected, rtol=1e-9)
  # A window one position off gives another answer: the test sees which positions are fit.
  a2, b2 = np.polyfit(
    decoded[n_context - fit - 1 : n_context - 1], ys[n_context - fit - 1 : n_context - 1], 1
  )
  assert not np.isclose(
    np.mean(np.square(a2 * decoded[n_context:] + b2 - ys[n_context:])) / d, expected
  )


def test_affine_probe_on_constant_decodings_predicts_the_fit_mean():
  d, n_context, queries, prompts, fit = 5, 8, 6, 40, 7
  batch = _linear_prompts(n_context + queries, prompts, d)
  task = types.SimpleNamespace(d=d, function_class="linear_regression")
  ys = batch["ys"].astype(np.float64)
  rng = np.random.default_rng(2)
  # Seven float64 0.1s: centring on their computed mean leaves ~1e-17 rounding noise, so a slope
  # of noise over noise; the probe must see a constant and predict the fit mean.
  context = np.full((1, prompts, n_context), 0.1)
  layers = {"m": {"queries": rng.standard_normal((1, prompts, queries)), "context": context}}
  errors = _by_probe(icl_report.probing_rows(task, layers, batch, n_context, fit))
  fit_mean = ys[:, n_context - fit : n_context].mean(axis=1, keepdims=True)
  expected = np.mean(np.square(ys[:, n_context:] - fit_mean)) / d
  assert np.isfinite(errors[("m", "affine_1d", 0)])
  np.testing.assert_allclose(errors[("m", "affine_1d", 0)], expected, rtol=1e-9)


def test_probing_rows_for_a_nonlinear_class_have_no_weights_probe():
  d, n_context, queries, prompts, fit = 5, 8, 6, 20, 4
  for class_name in ("relu_2nn", "decision_tree"):
    batch = function_classes.icl_batch(
      jax.random.key(7), class_name, n_context + queries, batch_size=prompts, d=d
    )
    batch = jax.tree.map(np.asarray, batch)
    assert "w" not in batch["function"]
    task = types.SimpleNamespace(d=d, function_class=class_name)
    ys = batch["ys"]
    layers = {
      "m": {
        "queries": np.stack([0 * ys[:, n_context:], ys[:, n_context:]]),
        "context": np.stack([0 * ys[:, :n_context], ys[:, :n_context]]),
      }
    }
    rows = icl_report.probing_rows(task, layers, batch, n_context, fit)
    assert {r["probe"] for r in rows} == {"decoded", "affine_1d"}
    assert {r["task"] for r in rows} == {class_name} and len(rows) == 4
    errors = _by_probe(rows)
    assert errors[("m", "affine_1d", 1)] < 1e-10 and errors[("m", "decoded", 1)] < 1e-10


def test_check_probe_settings():
  def evaluation(fit, prompts=16):
    return ml_collections.ConfigDict({"probe_prompts": prompts, "probe_fit_points": fit})

  for fit in (2, 8):
    icl_report.check_probe_settings(evaluation(fit), n_context=8)
  icl_report.check_probe_settings(evaluation(1, prompts=0), n_context=8)  # probing off
  for fit in (1, 9, 4.0):
    with pytest.raises(ValueError, match="config.eval.probe_fit_points"):
      icl_report.check_probe_settings(evaluation(fit), n_context=8)


@pytest.fixture(scope="module")
def relu_task():
  """A tiny relu_2nn task (1-layer 8-wide Mamba and S4D) and its initial state, evaluating its
  own class only, without baselines."""
  from experiments import parallel
  from experiments.studies.icl import task as icl
  from tests.experiments.studies.icl.test_task import get_config, tiny

  config = tiny(get_config("relu_2nn", "cpu"), models=("mamba", "s4d"))
  config.eval.function_classes = ("relu_2nn",)
  config.eval.baselines = ml_collections.ConfigDict({})
  config.eval.num_prompts = 16
  config.eval.probe_fit_points = 3
  task = icl.Task(config, parallel.make_mesh())
  return task, task.init_state(jax.random.key(0))


def test_layer_queries_and_context_are_the_models_predictions(relu_task):
  task, state = relu_task
  n_context, queries = 4, 3
  batches = icl_report.evaluation_prompts(task, "relu_2nn", 16, n_context + queries)
  layers = icl_report.layer_query_predictions(task, state, batches, 16, n_context)
  xs, ys = (np.asarray(batches[0][k]) for k in ("xs", "ys"))
  predict = nnx.jit(lambda model, prompt: model(prompt))  # compiled: eager takes longer
  with_residuals = nnx.jit(lambda model, prompt: model(prompt, return_residuals=True))
  for name in task.names:
    assert layers[name]["queries"].shape == (2, 16, queries)
    assert layers[name]["context"].shape == (2, 16, n_context)
    model = task.model(state, name)
    for q in range(queries):
      keep = np.r_[0:n_context, n_context + q]
      prompt = function_classes.make_prompt(xs[:, keep], ys[:, keep])
      direct = function_classes.read_predictions(predict(model, prompt))
      np.testing.assert_allclose(
        layers[name]["queries"][-1, :, q], direct[:, n_context], rtol=1e-4, atol=1e-5
      )
    # The context alone, decoded at its x tokens: the last layer is the model's own output there.
    prompt = function_classes.make_prompt(xs[:, :n_context], ys[:, :n_context])
    outputs, residuals = with_residuals(model, prompt)
    direct = function_classes.read_predictions(outputs)
    np.testing.assert_allclose(layers[name]["context"][-1], direct, rtol=1e-4, atol=1e-5)
    for layer, residual in enumerate(residuals):
      decoded = np.asarray(model.read_out_residual(residual))[:, ::2]
      np.testing.assert_allclose(layers[name]["context"][layer], decoded, rtol=1e-4, atol=1e-5)


def test_write_probes_a_nonlinear_class(relu_task, tmp_path):
  task, state = relu_task
  icl_report.write(task, state, str(tmp_path))
  with open(tmp_path / icl_report.PROBING_CSV) as f:
    rows = list(csv.DictReader(f))
  assert {r["probe"] for r in rows} == {"decoded", "affine_1d"}
  assert {r["task"] for r in rows} == {"relu_2nn"} and {r["model"] for r in rows} == {
    "mamba",
    "s4d",
  }
  assert {r["n_points"] for r in rows} == {str(task.training_points - 1)}
  assert all(np.isfinite(float(r["error"])) for r in rows)
  assert (tmp_path / icl_report.PROBING_PNG).exists()
