"""Study B's task: batches from (seed, step) under the curriculum, per-model optimisers, the
config checks, a smoke run of every function class, and 8 devices following 1."""

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments import metrics as run_metrics
from experiments import parallel, train
from experiments.studies.icl import function_classes
from experiments.studies.icl import task as icl
from experiments.studies.icl.configs import icl as icl_config
from tests.experiments.test_train import ROOT, _losses, run_main
from tests.experiments.unchanged_leaves import unchanged_leaves

TRAINED_CLASSES = ("linear_regression", "sparse_linear_regression", "relu_2nn", "decision_tree")
CONFIG = os.path.join(ROOT, "experiments", "studies", "icl", "configs", "icl.py")


def get_config(function_class, variant):
  return icl_config.get_config(f"function_class={function_class},variant={variant}")


def tiny(config, models=("mamba", "mamba_length_adaptive", "transformer", "s4d")):
  """A config shrunk to seconds: 1-layer 8-wide models, 3 steps, 128 evaluation prompts."""
  config.models = models
  config.batch_size = 8
  config.num_train_steps = 3
  config.model.transformer.num_train_steps = 0  # the shared budget (the CPU config's is longer)
  config.log_every_steps = 1
  config.checkpoint_every_steps = 3
  for family in ("mamba", "transformer", "s4d"):
    config.model[family].d_model = 8
    config.model[family].n_layers = 1
  config.model.mamba.d_state = 4
  config.model.s4d.d_state = 4
  config.model.transformer.n_heads = 2
  config.eval.num_prompts = 32
  config.eval.batch_size = 16
  config.eval.slow_baseline_prompts = 2
  config.eval.bootstrap_resamples = 50
  config.eval.probe_prompts = 16
  return config


def test_batch_is_the_curriculum_stage_of_the_global_example_stream():
  config = tiny(get_config("linear_regression", "paper"))
  config.icl.curriculum.dims.interval = config.icl.curriculum.points.interval = 2
  task = icl.Task(config, parallel.make_mesh())
  for step in (0, 3, 4):
    batch = task.batch(step)
    d_active, stage_points = function_classes.curriculum_at(step, config.icl.curriculum)
    assert (d_active, stage_points) == (5 + step // 2, 11 + 2 * (step // 2))
    _, n_points, bucket = task.points_of_step(step)
    assert 1 <= n_points <= bucket <= stage_points and bucket in task.buckets(stage_points)
    expected = function_classes.icl_batch(
      task.data_key,
      "linear_regression",
      bucket,
      example_index=np.arange(8 * step, 8 * step + 8),
      d=20,
      d_active=d_active,
    )
    np.testing.assert_array_equal(batch["xs"], expected["xs"])
    np.testing.assert_array_equal(batch["ys"], expected["ys"])
    np.testing.assert_array_equal(batch["d_active"], np.full(8, d_active))
    np.testing.assert_array_equal(batch["n_points"], np.full(8, n_points))
    assert not np.any(np.asarray(batch["xs"])[..., d_active:])


def _horizon_weight(task, step):
  """The weight that task.loss gives the last point of `step`'s prompts (summed over the batch):
  d loss / d prediction there, for predictions 1 above every label, over 2."""
  batch = task.batch(step)
  ys = batch["ys"]

  def loss(predictions):
    outputs = jnp.zeros((ys.shape[0], 2 * ys.shape[1])).at[:, ::2].set(predictions)
    return task.loss(lambda prompt, **_: outputs, batch)

  return float(jnp.sum(jax.grad(loss)(ys + 1.0)[:, -1]) / 2)


def test_horizon_keeps_most_of_its_loss_weight_and_lengths_vary():
  """Garg et al. give position N (the stage's points) weight 1/N every step. Here n is N in 3/4
  of the steps (weight 1/N) and otherwise in [ceil(N/2), N - 1] (weight 0), so N keeps about 3/4
  of its weight; drawing n from [1, N] as before kept 1/N of it. The lengths still vary."""
  config = tiny(get_config("linear_regression", "cpu"))
  cpu = icl.Task(config, parallel.make_mesh())
  steps = range(200)
  draws = [cpu.points_of_step(step) for step in steps]
  assert {n for _, n, _ in draws} == set(range(6, 12)) and {b for _, _, b in draws} == {11}
  weight = np.mean([_horizon_weight(cpu, step) for step in steps]) * 11
  assert 0.65 < weight < 0.85, weight
  config = tiny(get_config("linear_regression", "paper"))
  config.num_train_steps = 40_000
  paper = icl.Task(config, parallel.make_mesh())
  stage = [paper.points_of_step(step)[1] for step in range(6000, 6300)]  # stage of 17 points
  assert min(stage) == 9 and max(stage) == 17
  assert config.model.mamba.length_ref == 21 + 41  # the middle of 42 .. 82 tokens


def test_padding_after_the_points_changes_no_loss():
  """A prompt built at a bucket and cut at n points scores as the n-point prompt itself, for
  every model; the length-adaptive one is told L = 2n (with alpha = 1, L matters)."""
  config = tiny(get_config("linear_regression", "cpu"))
  config.model.s4d.dropout = 0.0
  task = icl.Task(config, parallel.make_mesh())
  step = next(s for s in range(100) if task.points_of_step(s)[1] < task.points_of_step(s)[2])
  batch = task.batch(step)
  n = int(batch["n_points"][0])
  cut = dict(batch, xs=batch["xs"][:, :n], ys=batch["ys"][:, :n])
  state = task.init_state(jax.random.key(0))
  loss = nnx.jit(task.loss)  # compiled: the eager models take several times longer
  for name in task.names:
    model = task.model(state, name)
    if name == "mamba_length_adaptive":
      for layer in model.backbone.backbone.layers:
        alpha = layer.mixer.discretization.alpha
        alpha[...] = jnp.ones_like(alpha[...])
    padded, unpadded = loss(model, batch), loss(model, cut)
    np.testing.assert_allclose(padded, unpadded, rtol=1e-5, err_msg=name)
    if name == "mamba_length_adaptive":
      told_bucket = dict(cut, n_points=np.full(8, batch["xs"].shape[1]))
      assert not np.isclose(loss(model, told_bucket), unpadded, rtol=1e-4)


def test_a_few_steps_move_every_parameter_of_every_model():
  """No frozen parameter, alpha included (one prompt length for every step once left alpha
  with a zero gradient): 3 steps of the CPU optimiser change every leaf of every model."""
  config = tiny(get_config("linear_regression", "cpu"))
  config.optimizer.warmup_steps = 0
  task = icl.Task(config, parallel.make_mesh())
  start = task.init_state(jax.random.key(5))
  state = start
  train_step = jax.jit(task.train_step)
  for step in range(3):
    state, _ = train_step(state, task.batch(step))
  for name in task.names:
    frozen = unchanged_leaves(start["params"][name], state["params"][name])
    assert not frozen, (name, frozen)


def test_mamba_variants_start_from_the_same_parameters():
  task = icl.Task(tiny(get_config("linear_regression", "cpu")), parallel.make_mesh())
  state = task.init_state(jax.random.key(1))
  fixed = state["params"]["mamba"]
  adaptive = state["params"]["mamba_length_adaptive"]
  flat = dict(jax.tree_util.tree_flatten_with_path(adaptive)[0])
  for path, value in jax.tree_util.tree_flatten_with_path(fixed)[0]:
    np.testing.assert_array_equal(flat[path], value, err_msg=jax.tree_util.keystr(path))


def test_step_metrics_and_per_family_learning_rates():
  config = tiny(get_config("linear_regression", "cpu"))
  task = icl.Task(config, parallel.make_mesh())
  assert task.optimizer_config("s4d").learning_rate == 3e-3
  assert task.optimizer_config("mamba").learning_rate == config.optimizer.learning_rate == 1e-3
  state = task.init_state(jax.random.key(0))
  batch = task.batch(0)
  n = int(batch["n_points"][0])
  _, metrics = jax.jit(task.train_step)(state, batch)
  assert config.model.s4d.dropout > 0  # training applies S4D's dropout, drawn from the step
  dropout_key = jax.random.fold_in(task.dropout_key, 0)
  for name in task.names:
    model = task.model(state, name)
    prompt = function_classes.make_prompt(batch["xs"], batch["ys"])
    outputs = model(prompt, n_points=n, dropout_key=dropout_key)
    assert np.allclose(outputs, model(prompt, n_points=n)) == (name != "s4d")
    predictions = function_classes.read_predictions(outputs)[:, :n]
    mse = np.mean(np.square(np.asarray(predictions) - np.asarray(batch["ys"])[:, :n]))
    np.testing.assert_allclose(metrics[f"loss_{name}"], mse, rtol=1e-5)
    np.testing.assert_allclose(metrics[f"error_{name}"], mse / 5, rtol=1e-5)
  assert float(metrics["n_points"]) == n and float(metrics["d_active"]) == 5


@pytest.mark.parametrize("variant", ("cpu", "paper"))
def test_skewed_linear_regression_is_a_training_config(variant):
  """Grazzi et al. also train on skewed covariance: the config builds, the task constructs and
  trains on skewed inputs, evaluated on its own class with linear regression's baselines."""
  config = tiny(get_config("skewed_linear_regression", variant))
  assert config.icl.function_class == "skewed_linear_regression"
  assert tuple(config.eval.function_classes) == ("skewed_linear_regression",)
  assert config.eval.baselines.skewed_linear_regression == ("least_squares", "averaging", "knn3")
  task = icl.Task(config, parallel.make_mesh())
  batch = task.batch(0)
  d_active, _, bucket = task.points_of_step(0)
  expected = function_classes.icl_batch(
    task.data_key,
    "skewed_linear_regression",
    bucket,
    example_index=np.arange(8),
    d=config.icl.d,
    d_active=d_active,
  )
  np.testing.assert_array_equal(batch["xs"], expected["xs"])
  plain = function_classes.icl_batch(
    task.data_key, "linear_regression", bucket, example_index=np.arange(8), d=config.icl.d
  )
  assert not np.allclose(expected["xs"], plain["xs"])


def test_bad_configs_are_refused():
  mesh = parallel.make_mesh()
  config = tiny(get_config("noisy_linear_regression", "cpu"))
  with pytest.raises(ValueError, match="evaluation only"):
    icl.Task(config, mesh)
  config = tiny(get_config("linear_regression", "cpu"))
  config.icl.curriculum.dims.end = 6
  with pytest.raises(ValueError, match="exceeds config.icl.d = 5"):
    icl.Task(config, mesh)
  with pytest.raises(ValueError, match="Unknown config variant"):
    get_config("linear_regression", "tpu")
  with pytest.raises(ValueError, match="Unknown function class"):
    get_config("quadratic", "cpu")
  with pytest.raises(ValueError, match="key one of"):
    icl_config.get_config("task=relu_2nn")
  config = tiny(get_config("linear_regression", "cpu"))
  config.model.transformer.num_train_steps = -1
  with pytest.raises(ValueError, match="expected an int >= 1"):
    icl.Task(config, mesh)
  config.model.transformer.num_train_steps = 5  # stops in the curriculum's first stage
  config.icl.curriculum.points.end, config.icl.curriculum.points.interval = 13, 4
  with pytest.raises(ValueError, match="transformer trains 5 steps and ends in"):
    icl.Task(config, mesh)


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("eval.n_points", 5, "config.eval.n_points = 5 is below the training number of points, 11"),
    ("eval.probe_queries", 2, "config.eval.probe_queries = 2 is below d = 5"),
    ("eval.probe_fit_points", 11, "config.eval.probe_fit_points"),
    ("eval.function_classes", ("quadratic",), "Unknown function class 'quadratic'"),
    ("eval.batch_size", 0, "must be positive"),
    ("models", ("mamba", "mamba"), "each at most once"),
    ("model.transformer.max_length", 54, "max_length = 54 is below the 56 tokens"),
  ],
)
def test_evaluation_settings_are_checked_before_training(field, value, message):
  """Settings that the evaluation reads fail when the task is built, not after training."""
  config = tiny(get_config("linear_regression", "cpu"))
  section, _, name = field.rpartition(".")
  setattr(config[section] if section else config, name, value)
  with pytest.raises(ValueError, match=message):
    icl.Task(config, parallel.make_mesh())


def test_shipped_configs_follow_the_paper():
  config = get_config("relu_2nn", "paper")
  assert (config.icl.d, config.batch_size, config.num_train_steps) == (20, 64, 500_000)
  assert config.model.mamba.n_layers == 24 and config.model.transformer.n_layers == 12
  assert config.model.mamba.d_model == config.model.transformer.d_model == 256
  assert dict(config.icl.curriculum.points) == dict(start=26, end=101, increment=5, interval=2000)
  assert config.eval.n_points >= 2.5 * 101 and config.eval.num_prompts == 1280
  cpu = get_config("linear_regression", "cpu")
  assert cpu.icl.d == 5 and cpu.model.mamba.d_model == 64 and cpu.eval.n_points >= 2.5 * 11
  # Positional embeddings: the paper's transformer has none; the CPU one needs them (test_model)
  assert not config.model.transformer.positional_embeddings
  assert cpu.model.transformer.positional_embeddings
  assert cpu.model.transformer.max_length == 2 * cpu.eval.n_points
  # The CPU transformer's own budget (README study B); every other model, and the paper's, share
  # config.num_train_steps
  task = icl.Task(cpu, parallel.make_mesh())
  assert task.train_steps("transformer") == cpu.model.transformer.num_train_steps > 2000
  assert task.train_steps("mamba") == task.train_steps("s4d") == cpu.num_train_steps == 2000
  assert task.num_train_steps == cpu.model.transformer.num_train_steps
  assert icl.Task(config, parallel.make_mesh()).num_train_steps == 500_000


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


@pytest.mark.parametrize(
  "class_name",
  [
    pytest.param(name, marks=pytest.mark.smoke) if name == "linear_regression" else name
    for name in TRAINED_CLASSES
  ],
)
def test_smoke_run_of_each_function_class(class_name, tmp_path):
  config = tiny(
    get_config(class_name, "cpu"),
    models=("mamba", "mamba_length_adaptive", "transformer", "s4d")
    if class_name == "linear_regression"
    else ("mamba", "transformer"),
  )
  train.train_and_evaluate(config, str(tmp_path))
  out = tmp_path / "eval"
  rows = _rows(out / "icl_curves.csv")
  assert set(rows[0]) >= {"task", "model", "n_points", "error", "lo", "hi"}
  expected_models = set(config.models) | set(icl_config.BASELINES[class_name])
  eval_classes = config.eval.function_classes
  for name in eval_classes:
    assert {r["model"] for r in rows if r["task"] == name} == expected_models
    assert (out / f"icl_{name}.png").exists()
  points = sorted({int(r["n_points"]) for r in rows})
  assert points == list(range(config.eval.n_points))
  for r in rows:
    assert float(r["lo"]) <= float(r["error"]) <= float(r["hi"])
  assert len(_rows(out / "icl_summary.csv")) == len(eval_classes) * len(expected_models)
  assert (out / "icl_summary.md").exists()
  alpha_models = {r["model"] for r in _rows(out / "discretization.csv")}
  assert alpha_models == ({"mamba_length_adaptive"} & set(config.models))
  probing = _rows(out / "probing.csv")  # every trained class: the paper's probe needs no w
  linear = class_name in ("linear_regression", "sparse_linear_regression")
  references = {"gd", "preconditioned_gd"} if linear else set()  # gd_iterates.py
  assert {r["model"] for r in probing} == set(config.models) | references
  expected_probes = {"decoded", "affine_1d"} | ({"weights", "gd_iterate"} if linear else set())
  assert {r["probe"] for r in probing} == expected_probes
  assert (out / "probing.png").exists()


def test_paper_variant_smoke_run_with_curriculum(tmp_path):
  config = tiny(get_config("linear_regression", "paper"), models=("mamba", "transformer"))
  config.icl.curriculum.dims.interval = config.icl.curriculum.points.interval = 1
  config.eval.function_classes = ("linear_regression",)
  train.train_and_evaluate(config, str(tmp_path))
  rows = _rows(tmp_path / "eval" / "icl_curves.csv")
  assert max(int(r["n_points"]) for r in rows) == config.eval.n_points - 1 == 102
  # Least squares is exact once it has seen d = 20 noiseless points.
  exact = [
    float(r["error"]) for r in rows if r["model"] == "least_squares" and int(r["n_points"]) >= 21
  ]
  assert max(exact) < 1e-6


def test_eight_devices_follow_one(tmp_path):
  config = CONFIG + ":variant=cpu"
  overrides = [
    "--config.models=('mamba','transformer')",
    "--config.batch_size=16",
    "--config.num_train_steps=4",
    "--config.model.transformer.num_train_steps=5",  # its own budget: one step more
    "--config.log_every_steps=1",
    "--config.model.mamba.n_layers=1",
    "--config.model.transformer.n_layers=1",
    "--config.eval.num_prompts=32",
    "--config.eval.batch_size=16",
    "--config.eval.function_classes=('linear_regression',)",
    "--config.eval.probe_prompts=0",
  ]
  losses = {}
  for devices in (1, 8):
    workdir = str(tmp_path / str(devices))
    run_main(config, workdir, overrides, devices)
    losses[devices] = _losses(workdir)
  assert len(losses[1]) == 5  # the run lasts the longest budget
  np.testing.assert_allclose(losses[8], losses[1], rtol=1e-5, atol=1e-6)
  rows = run_metrics.read_jsonl(os.path.join(str(tmp_path / "1"), run_metrics.METRICS_FILE))
  assert "loss_mamba" in rows[3] and "loss_mamba" not in rows[4]  # past its budget: not logged
  assert rows[4]["loss"] == rows[4]["loss_transformer"]
