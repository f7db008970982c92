"""Study A's evaluation: the one-compile length sweep equals contexts built at each length, the
mean-image floor, the stage analysis (k of L, L told to length-aware models), paired starts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments import data, parallel
from experiments.studies.length_generalisation import patches, report
from experiments.studies.length_generalisation import task as study_a
from experiments.studies.length_generalisation.model import squared_error
from tests.experiments.test_selection import tiny_config
from tests.experiments.unchanged_leaves import unchanged_leaves

MODELS = ("mamba", "mamba_length_adaptive", "mamba_length_token", "transformer")


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
  """A task of every model, its state with alpha away from 0 and the length token's steps at
  about 1 (at the start they are 0.001 to 0.1, and the token's effect on the query MSE, about
  1e-6, would be float32 noise), and the evaluation split."""
  c = tiny_config(tmp_path_factory.mktemp("tfds"), 2, select="last", models=MODELS)
  c.eval.num_examples = 12
  c.eval.batch_size = 8
  task = study_a.Task(c, parallel.make_mesh())
  state = task.init_state(jax.random.key(0))
  for name, leaf, value in (
    ("mamba_length_adaptive", "alpha", 0.7),
    ("mamba_length_token", "dt_bias", np.log(np.e - 1)),  # softplus^-1(1): steps of about 1
    ("mamba_length_token", "A_log", np.log(0.01)),  # A = -0.01: the token's state lasts
  ):
    state["params"][name] = jax.tree_util.tree_map_with_path(
      lambda path, x, leaf=leaf, value=value: (
        jnp.full_like(x, value) if leaf in jax.tree_util.keystr(path) else x
      ),
      state["params"][name],
    )
  return task, state, data.open_split(c, c.data.eval_split)


_jitted_error = nnx.jit(squared_error)  # compiled: the eager models take several times longer


def direct_mse(task, state, source, name, n_context, total_length):
  """The weighted MSE over the sweep's images, contexts built at exactly n_context patches."""
  config = task.config
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
  model = task.model(state, name)
  total = count = 0.0
  n_images = min(config.eval.num_examples, len(source))
  for images, weight in data.evaluation_batches(source, config.eval.batch_size, n_images, 1):
    batch = patches.patch_sequences(
      jnp.asarray(images["image"]),
      key,
      n_context,
      config.sequence.num_queries,
      task.patch_size,
      images["index"],
    )
    batch["total_length"] = jnp.full(weight.shape, total_length)
    error = np.asarray(_jitted_error(model, batch))
    total, count = total + float(np.sum(error * weight)), count + float(np.sum(weight))
  return total / count


def test_sweep_from_one_context_equals_contexts_built_at_each_length(setting):
  task, state, source = setting
  rows = report.length_sweep(task, state, source, lengths=[1, 3, 5])
  assert [(r["model"], r["L"]) for r in rows] == [(m, n) for m in MODELS for n in (1, 3, 5)]
  for row in rows:
    expected = direct_mse(task, state, source, row["model"], row["L"], row["L"])
    np.testing.assert_allclose(row["mse"], expected, rtol=2e-5, err_msg=str(row))
    assert row["n_images"] == 12


def test_mean_image_row_reads_the_training_mean_at_the_same_queries(setting):
  task, state, source = setting
  baseline = report.mean_image(task.source)
  images = np.stack([task.source[i]["image"] for i in range(len(task.source))])
  np.testing.assert_allclose(baseline, images.astype(np.float64).mean(axis=0), atol=1e-6)
  rows = report.length_sweep(task, state, source, lengths=[2, 4], baseline=baseline)
  floor = [r for r in rows if r["model"] == report.MEAN_IMAGE]
  assert [r["L"] for r in floor] == [2, 4]
  config = task.config
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
  eval_images = np.stack([source[i]["image"] for i in range(12)])
  truth = patches.patch_sequences(jnp.asarray(eval_images), key, 1, config.sequence.num_queries, 4)
  copies = np.broadcast_to(baseline, eval_images.shape)
  guess = patches.patch_sequences(jnp.asarray(copies), key, 1, config.sequence.num_queries, 4)
  expected = float(jnp.mean(jnp.square(guess["query_targets"] - truth["query_targets"])))
  for row in floor:
    np.testing.assert_allclose(row["mse"], expected, rtol=1e-5)


def test_stages_tell_length_aware_models_the_total_length(setting):
  """The fixture's length-aware models react to L by 4e-5 (alpha) and 2e-4 (the token) in the
  MSE, against float32 rounding of about 1e-7: telling them k instead of L fails both the rtol
  checks and the bar below."""
  task, state, source = setting
  assert report.stage_grid(16) == [1, 2, 4, 8, 16]
  assert report.stage_grid(12) == [1, 2, 4, 8, 12]
  assert report.stage_lengths(task.config) == [4, 16]  # 1x and 4x the training maximum
  rows = report.stages(task, state, source, baseline=report.mean_image(task.source))
  assert all(set(r) == set(report.STAGES_COLUMNS) for r in rows)
  by_key = {(r["model"], r["L"], r["k"]): r["mse"] for r in rows}
  assert {(m, n) for m, n, _ in by_key} == {
    (m, n) for m in MODELS + ("mean_image",) for n in (4, 16)
  }
  for name in MODELS:
    # after all L patches: the sweep's value at L
    np.testing.assert_allclose(
      by_key[(name, 16, 16)], direct_mse(task, state, source, name, 16, 16), rtol=2e-5
    )
    # after k of L: contexts of k patches with L told
    np.testing.assert_allclose(
      by_key[(name, 16, 2)], direct_mse(task, state, source, name, 2, 16), rtol=2e-5
    )
  # Models blind to L answer the same after 4 of 4 and after 4 of 16; length-aware ones do not.
  for name in ("mamba", "transformer"):
    np.testing.assert_allclose(by_key[(name, 4, 4)], by_key[(name, 16, 4)], rtol=2e-5)
  for name in ("mamba_length_adaptive", "mamba_length_token"):
    assert abs(by_key[(name, 4, 4)] - by_key[(name, 16, 4)]) > 1e-5, name


def test_mamba_variants_start_from_the_same_parameters(setting):
  task, _, _ = setting
  state = task.init_state(jax.random.key(3))
  flat = {
    name: dict(jax.tree_util.tree_flatten_with_path(state["params"][name])[0]) for name in MODELS
  }
  fixed = flat["mamba"]
  for name in ("mamba_length_adaptive", "mamba_length_token"):
    shared = [path for path in flat[name] if path in fixed]
    assert len(shared) == len(fixed)
    for path in shared:
      np.testing.assert_array_equal(np.asarray(flat[name][path]), np.asarray(fixed[path]))
    extra = [jax.tree_util.keystr(p) for p in flat[name] if p not in fixed]
    assert extra, name
  alphas = [
    v for p, v in flat["mamba_length_adaptive"].items() if "alpha" in jax.tree_util.keystr(p)
  ]
  assert alphas and all(np.all(np.asarray(a) == 0) for a in alphas)
  # the transformer keeps its own key
  kernel = lambda name: np.asarray(state["params"][name]["patch_conv"]["kernel"][...])
  assert not np.array_equal(kernel("transformer"), kernel("mamba"))


def test_a_few_steps_move_every_parameter_of_every_model(setting):
  """No frozen parameter: 3 steps of the demo's optimiser change every leaf of every model."""
  task, _, _ = setting
  start = task.init_state(jax.random.key(5))
  state = start
  train_step = jax.jit(task.train_step)
  for step in range(3):
    state, _ = train_step(state, task.batch(step))
  for name in MODELS:
    frozen = unchanged_leaves(start["params"][name], state["params"][name])
    assert not frozen, (name, frozen)
