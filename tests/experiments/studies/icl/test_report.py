"""Study B's report pieces on known inputs: curves with bands, the summary, and the probes."""

import types

import jax
import ml_collections
import numpy as np

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


def test_probes_score_zero_for_the_true_function_and_one_for_zero():
  d, n_context, queries, prompts = 5, 3, 12, 400
  batch = function_classes.icl_batch(
    jax.random.key(7), "linear_regression", n_context + queries, batch_size=prompts, d=d
  )
  batch = jax.tree.map(np.asarray, batch)
  task = types.SimpleNamespace(d=d, function_class="linear_regression")
  truth = batch["ys"][:, n_context:]
  noise = 0.5 * np.random.default_rng(0).standard_normal(truth.shape)
  layers = {"oracle": np.stack([np.zeros_like(truth), truth]), "noisy": truth[None] + noise}
  rows = {
    (r["model"], r["layer"]): r for r in icl_report.probing_rows(task, layers, batch, n_context)
  }
  assert rows[("oracle", 1)]["depth"] == 1.0 and rows[("oracle", 0)]["depth"] == 0.0
  assert rows[("oracle", 1)]["n_points"] == n_context
  assert rows[("oracle", 1)]["decoded_error"] < 1e-10
  assert rows[("oracle", 1)]["probe_error"] < 1e-10
  np.testing.assert_allclose(rows[("oracle", 0)]["probe_error"], 1.0, rtol=0.15)
  np.testing.assert_allclose(rows[("oracle", 0)]["decoded_error"], 1.0, rtol=0.15)
  # Noise of variance 0.25 on 12 queries: the decoding scores 0.25 / d, the probe, which
  # averages the noise over the queries, about 0.25 / d * d / (12 - d - 1).
  np.testing.assert_allclose(rows[("noisy", 0)]["decoded_error"], 0.25 / d, rtol=0.15)
  np.testing.assert_allclose(rows[("noisy", 0)]["probe_error"], 0.25 / (queries - d - 1), rtol=0.2)


def test_layer_queries_last_layer_is_the_models_prediction_after_the_context():
  from experiments import parallel
  from experiments.studies.icl import task as icl
  from tests.experiments.studies.icl.test_task import get_config, tiny

  task = icl.Task(
    tiny(get_config("linear_regression", "cpu"), models=("mamba", "s4d")), parallel.make_mesh()
  )
  state = task.init_state(jax.random.key(0))
  n_context, queries = 4, 3
  batches = icl_report.evaluation_prompts(task, "linear_regression", 16, n_context + queries)
  layers = icl_report.layer_query_predictions(task, state, batches, 16, n_context)
  xs, ys = (np.asarray(batches[0][k]) for k in ("xs", "ys"))
  for name in task.names:
    assert layers[name].shape == (2, 16, queries)
    model = task.model(state, name)
    for q in range(queries):
      keep = np.r_[0:n_context, n_context + q]
      prompt = function_classes.make_prompt(xs[:, keep], ys[:, keep])
      direct = function_classes.read_predictions(model(prompt))
      np.testing.assert_allclose(layers[name][-1, :, q], direct[:, n_context], rtol=1e-4, atol=1e-5)
