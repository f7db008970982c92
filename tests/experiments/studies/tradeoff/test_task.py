"""Study C's task: the three-optimiser update (each part moves only under its own loss), the loss
weighting, batches (rotated as the paper's CIFAR-10 runs, RGB kept), config checks, the
evaluation (never rotated), the CIFAR-10 config failing fast without its data, and 8 devices
following 1."""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from experiments import data, optimizers, parallel, train
from experiments.data import augment
from experiments.studies.tradeoff import report as tradeoff_report
from experiments.studies.tradeoff import task as tradeoff
from experiments.studies.tradeoff.configs import digits as tradeoff_digits
from experiments.studies.tradeoff.networks import (
  ARCHITECTURES,
  PARTS,
  cross_entropy,
  reconstruction_error,
)
from tests.experiments.test_train import ROOT, _losses, run_main


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("tfds")
  data.digits.prepare(directory)
  return str(directory)


def tiny(data_dir, architecture="fc_small", lam=0.3):
  c = tradeoff_digits.get_config()
  c.data.data_dir = data_dir
  c.model.architecture, c.model.latent_dim, c.lam = architecture, 3, lam
  c.model.head_hidden = 4
  c.model.project_fc.small = (16,)
  c.model.mamba.d_model = 8
  c.model.mamba.d_state = 4
  c.batch_size = 16
  c.num_train_steps = 3
  c.eval.num_images = 2
  c.eval.select = "last"  # "best" (the default) evaluates from checkpoints: train_and_evaluate
  return c


def make_task(data_dir, **kwargs):
  task = tradeoff.Task(tiny(data_dir, **kwargs), parallel.make_mesh())
  return task, task.init_state(jax.random.key(0))


def _losses_of(task, params, batch):
  _, reconstructions, logits = jax.jit(task.apply)(params, batch["image"])
  return (
    jnp.mean(reconstruction_error(reconstructions, batch["image"])),
    jnp.mean(cross_entropy(logits, batch["label"])),
  )


def _grad(task, params, batch, part, weights):
  """d(weights[0] * MSE + weights[1] * CE) / d(params[part]), straight from the losses."""

  def loss(part_params):
    mse, ce = _losses_of(task, {**params, part: part_params}, batch)
    return weights[0] * mse + weights[1] * ce

  return jax.jit(jax.grad(loss))(params[part])


def _loss_grads(task, params, batch):
  """(dMSE / dparams, dCE / dparams), every part, straight from the losses."""

  def both(params):
    return tuple(jax.grad(lambda p, i=i: _losses_of(task, p, batch)[i])(params) for i in (0, 1))

  return jax.jit(both)(params)


def _assert_trees(assertion, a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assertion(np.asarray(x), np.asarray(y))


def _moved(before, after):
  return any(
    not np.array_equal(x, y)
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
  )


# The scheme does not depend on the architecture; mamba (slower to compile) checks it once more.
ARCHITECTURES_CHECKED = ["fc_small", "mamba"]


@pytest.mark.parametrize("architecture", ARCHITECTURES_CHECKED)
def test_each_part_gets_its_own_gradient_and_optimiser(data_dir, architecture):
  """Encoder: d(lam MSE + (1 - lam) CE); decoder: dMSE; head: dCE; each through its own Adam."""
  lam = 0.3
  task, state = make_task(data_dir, architecture=architecture, lam=lam)
  params, batch = state["params"], task.batch(0)
  grads, metrics, _ = jax.jit(task.train_gradients)(params, batch)
  close = lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-7)  # noqa: E731
  _assert_trees(close, grads["encoder"], _grad(task, params, batch, "encoder", (lam, 1 - lam)))
  g_mse, g_ce = _loss_grads(task, params, batch)
  _assert_trees(close, grads["decoder"], g_mse["decoder"])
  _assert_trees(close, grads["head"], g_ce["head"])
  # The weighting matters: the encoder's gradient is neither loss's alone.
  assert _moved(grads["encoder"], g_mse["encoder"]) and _moved(grads["encoder"], g_ce["encoder"])

  new_state, step_metrics = jax.jit(task.train_step)(state, batch)

  def adam_step(part_params, part_grads):  # a fresh optimiser, on this part's gradient alone
    tx = optimizers.make_optimizer(task.config.optimizer, 3, part_params)
    updates, _ = tx.update(part_grads, tx.init(part_params), part_params)
    return optax.apply_updates(part_params, updates)

  for part in PARTS:
    _assert_trees(close, new_state["params"][part], jax.jit(adam_step)(params[part], grads[part]))
  assert int(new_state["step"]) == 1
  for key in ("loss", "mse", "cross_entropy", "accuracy"):
    np.testing.assert_allclose(step_metrics[key], metrics[key], rtol=1e-6)


def _cut(task, params, part):
  """params with part's `from_latent` kernel zeroed: z no longer reaches that part's output."""
  module = task.part(part, params[part])
  module.from_latent.kernel[...] = jnp.zeros_like(module.from_latent.kernel[...])
  return {**params, part: nnx.split(module, nnx.Param)[1]}


@pytest.mark.parametrize("architecture", ARCHITECTURES_CHECKED)
@pytest.mark.parametrize("lam,cut", [(1.0, "decoder"), (0.0, "head")])
def test_parameters_that_must_not_move(data_dir, architecture, lam, cut):
  """At lam = 1 the encoder learns from the MSE alone: with the decoder cut from z, the MSE has
  no gradient for the encoder, so it must not move, although the CE still has one (the head keeps
  learning the CE). At lam = 0 the same with the roles swapped: the head cut, the encoder still,
  the decoder learning the MSE. Adam moves a parameter whose gradient is exactly 0 by exactly 0."""
  task, state = make_task(data_dir, architecture=architecture, lam=lam)
  state["params"] = _cut(task, state["params"], cut)
  batch = task.batch(0)
  other = "head" if cut == "decoder" else "decoder"
  # The uncut part's loss does reach the encoder: only the weighting can keep it still.
  other_loss = (1.0, 0.0) if other == "decoder" else (0.0, 1.0)
  assert any(
    np.any(g != 0)
    for g in jax.tree.leaves(_grad(task, state["params"], batch, "encoder", other_loss))
  )
  new_state, _ = jax.jit(task.train_step)(state, batch)
  _assert_trees(
    np.testing.assert_array_equal, new_state["params"]["encoder"], state["params"]["encoder"]
  )
  assert _moved(state["params"][other], new_state["params"][other])
  assert _moved(state["params"][cut], new_state["params"][cut])


def test_decoder_and_head_updates_do_not_depend_on_lambda(data_dir):
  new = {}
  for lam in (0.2, 0.8):
    task, state = make_task(data_dir, lam=lam)
    new[lam] = jax.jit(task.train_step)(state, task.batch(0))[0]["params"]
  for part in ("decoder", "head"):
    _assert_trees(np.testing.assert_array_equal, new[0.2][part], new[0.8][part])
  assert _moved(new[0.2]["encoder"], new[0.8]["encoder"])


def _family_config(data_dir, architecture, masking_ratio=0.0):
  c = tiny(data_dir, architecture=architecture)
  c.model.latent_dim = 4  # the vit's token dimension: a multiple of 4 (and of its heads)
  c.model.project_vit.d_model = 8
  c.model.project_vit.n_heads = 2
  c.model.vit.masking_ratio = masking_ratio
  return c


STAT_PARTS = {"cnn_small": ["encoder"], "cnn_large": ["encoder", "head"], "vit": ["head"]}


@pytest.mark.parametrize(
  "architecture,masking_ratio",
  [(a, 0.0) for a in ARCHITECTURES if a != "mamba"] + [("vit", 0.5), ("mamba", 0.0)],
)
def test_a_few_steps_move_every_parameter_of_every_model(data_dir, architecture, masking_ratio):
  """Every family the study trains, as configured by default (PyTorch's init for fc_* and cnn_*,
  BatchNorm where the paper has it, cnn_large's dropout 0.2; the vit with masking too, whose mask
  token exists only then): three steps move every parameter array of the encoder, the decoder
  and the head, and every BatchNorm statistic."""
  task = tradeoff.Task(_family_config(data_dir, architecture, masking_ratio), parallel.make_mesh())
  assert task.stat_parts == STAT_PARTS.get(architecture, [])
  state = task.init_state(jax.random.key(0))
  step = jax.jit(task.train_step)
  new = state
  for i in range(3):
    new, metrics = step(new, task.batch(i))
  assert np.isfinite(float(metrics["loss"]))
  for part in PARTS:
    before, _ = jax.tree_util.tree_flatten_with_path(state["params"][part])
    after = jax.tree.leaves(new["params"][part])
    assert len(before) == len(after) > 0
    for (path, x), y in zip(before, after, strict=True):
      assert not np.array_equal(np.asarray(x), np.asarray(y)), (part, jax.tree_util.keystr(path))
  assert ("batch_stats" in state) == bool(task.stat_parts)
  for part in task.stat_parts:
    before, _ = jax.tree_util.tree_flatten_with_path(state["batch_stats"][part])
    after = jax.tree.leaves(new["batch_stats"][part])
    assert len(before) == len(after) > 0
    for (path, x), y in zip(before, after, strict=True):
      assert not np.array_equal(np.asarray(x), np.asarray(y)), (part, jax.tree_util.keystr(path))


def _cnn_task(data_dir, architecture="cnn_small", **model):
  c = tiny(data_dir, architecture=architecture)
  c.model.cnn_large.channels, c.model.cnn_large.head_channels = (4, 4, 4, 4), 4  # narrow
  for key, value in model.items():
    c.model[architecture][key] = value
  return tradeoff.Task(c, parallel.make_mesh())


def test_batch_norm_trains_on_the_batch_and_evaluates_on_its_averages(data_dir):
  """A training step normalises with the batch's statistics and moves the running averages
  PyTorch's way (0.9 old + 0.1 batch); evaluation normalises with the averages, so an image's
  output does not depend on the rest of its batch, and the state's statistics stay as they were."""
  task = _cnn_task(data_dir)
  state = task.init_state(jax.random.key(0))
  batch = task.batch(0)
  new, _ = jax.jit(task.train_step)(state, batch)
  before = task.part("encoder", state["params"]["encoder"], state["batch_stats"]["encoder"])
  after = task.part("encoder", new["params"]["encoder"], new["batch_stats"]["encoder"])
  first = np.asarray(before.convs[0](batch["image"][..., None]))
  np.testing.assert_allclose(
    after.norms[0].mean[...], 0.1 * first.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-7
  )
  np.testing.assert_allclose(
    after.norms[0].var[...], 0.9 + 0.1 * first.var(axis=(0, 1, 2)), rtol=1e-5
  )

  images = batch["image"]
  apply = jax.jit(task.apply)
  z_all = apply(new["params"], images, new["batch_stats"])[0]
  z_few = apply(new["params"], images[:4], new["batch_stats"])[0]
  np.testing.assert_allclose(z_few, z_all[:4], rtol=1e-5, atol=1e-6)
  training = lambda x: task.part(  # noqa: E731
    "encoder", new["params"]["encoder"], new["batch_stats"]["encoder"], training=True
  )(x)
  assert not np.allclose(training(images[:4]), training(images)[:4], atol=1e-4)
  stats = jax.tree.map(np.array, new["batch_stats"])
  tradeoff_report.test_metrics(task, new, task.eval_source())
  _assert_trees(np.testing.assert_array_equal, new["batch_stats"], stats)


def test_dropout_is_keyed_by_the_step_and_off_in_evaluation(data_dir):
  """cnn_large's channel dropout (the paper's 0.2): a training step's loss follows its key
  (config.seed and the step); without dropout the step does not matter; evaluation is the same
  network with or without it (the parameters do not depend on the rate)."""
  tasks = {rate: _cnn_task(data_dir, "cnn_large", dropout=rate) for rate in (0.2, 0.0)}
  losses = {}
  for rate, task in tasks.items():
    state, batch = task.init_state(jax.random.key(0)), task.batch(0)
    step = jax.jit(task.train_step)
    at = lambda s: float(step({**state, "step": jnp.asarray(s, jnp.int32)}, batch)[1]["loss"])  # noqa: E731,B023
    losses[rate] = (at(3), at(3), at(4))
  assert losses[0.2][0] == losses[0.2][1] != losses[0.2][2]
  assert losses[0.0][0] == losses[0.0][2] != losses[0.2][0]
  evaluations = [
    jax.jit(task.apply)(s["params"], batch["image"], s["batch_stats"])
    for task, s in ((t, t.init_state(jax.random.key(0))) for t in tasks.values())
  ]
  _assert_trees(np.testing.assert_array_equal, *evaluations)


def test_a_resumed_run_has_the_same_statistics(data_dir, tmp_path):
  """The BatchNorm averages are part of the checkpointed state: a run stopped after 2 steps and
  resumed to 4 ends with the statistics and parameters of 4 steps in one go."""
  config = tiny(data_dir, architecture="cnn_small")
  config.num_train_steps, config.checkpoint_every_steps = 2, 2
  workdir = str(tmp_path / "resumed")
  train.train_and_evaluate(config, workdir)
  config.num_train_steps = 4
  resumed = train.train_and_evaluate(config, workdir)
  task = tradeoff.Task(config, parallel.make_mesh())
  state, step = task.init_state(jax.random.key(config.seed)), jax.jit(task.train_step)
  for i in range(4):
    state, _ = step(state, task.batch(i))
  for key in ("batch_stats", "params"):
    _assert_trees(
      lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7),
      resumed[key],
      state[key],
    )


def test_vit_masking_keys_training_not_evaluation(data_dir):
  """With vit.masking_ratio > 0 a training step's mask follows its key (config.seed and the
  step); without a key, and in evaluation, every patch is seen and the output is deterministic."""
  task = tradeoff.Task(_family_config(data_dir, "vit", 0.5), parallel.make_mesh())
  state = task.init_state(jax.random.key(0))
  params, stats, batch = state["params"], state["batch_stats"], task.batch(0)
  gradients = jax.jit(task.train_gradients)
  mse = [float(gradients(params, batch, jax.random.key(k), stats)[1]["mse"]) for k in (0, 1)]
  assert mse[0] != mse[1]
  apply = jax.jit(task.apply)
  z, reconstructions, _ = apply(params, batch["image"], stats)
  assert z.shape == (16, 17, 4)
  np.testing.assert_array_equal(apply(params, batch["image"], stats)[1], reconstructions)
  _, unmasked, _ = gradients(params, batch, None, stats)  # no key: no masking, every pixel
  np.testing.assert_allclose(
    unmasked["mse"], jnp.mean((reconstructions - batch["image"]) ** 2), rtol=1e-5
  )
  step = jax.jit(task.train_step)
  at = lambda s: float(step({**state, "step": jnp.asarray(s, jnp.int32)}, batch)[1]["mse"])  # noqa: E731
  assert at(3) == at(3) and at(3) != at(4)


@pytest.mark.parametrize("lam", [0.0, 1.0, 0.3])
def test_loss_weighting(data_dir, lam):
  task, state = make_task(data_dir, lam=lam)
  batch = task.batch(1)
  grads, metrics, _ = jax.jit(task.train_gradients)(state["params"], batch)
  mse, ce = _losses_of(task, state["params"], batch)
  np.testing.assert_allclose(metrics["mse"], mse, rtol=1e-6)
  np.testing.assert_allclose(metrics["cross_entropy"], ce, rtol=1e-6)
  expected = {0.0: ce, 1.0: mse}.get(lam, lam * mse + (1 - lam) * ce)
  np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)
  if lam in (0.0, 1.0):  # the encoder follows one loss alone
    pure = _grad(task, state["params"], batch, "encoder", (lam, 1.0 - lam))
    _assert_trees(
      lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-7), grads["encoder"], pure
    )


def test_batch_is_the_global_slice_of_the_seeded_stream(data_dir):
  task, _ = make_task(data_dir)
  source = data.image_source("digits", "train", data_dir=data_dir, image_size=8)
  expected = next(data.batches(source, 16, task.config.seed, start_step=5))
  for _ in range(2):  # also when asked again, out of order
    batch = task.batch(5)
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (16, 8, 8) and batch["label"].dtype == jnp.int32
    np.testing.assert_array_equal(batch["image"], expected["image"])
    np.testing.assert_array_equal(batch["label"], expected["label"])


def test_bad_configs_name_the_field(data_dir):
  mesh = parallel.make_mesh()
  for lam in (-0.1, 1.5):
    config = tiny(data_dir)
    config.lam = lam
    with pytest.raises(ValueError, match=r"config\.lam = "):
      tradeoff.Task(config, mesh)
  for lam in ("0.5", True, None):
    with pytest.raises(ValueError, match=r"config\.lam = "):
      tradeoff.check_lam(lam)
  assert tradeoff.check_lam(1) == 1.0
  config = tiny(data_dir)
  config.data.train_examples = 60_000
  with pytest.raises(ValueError, match=r"config\.data\.train_examples = 60000.*holds 1437"):
    tradeoff.Task(config, mesh)


def test_missing_tfds_data_set_fails_fast_with_instructions(tmp_path):
  config = tiny(str(tmp_path))
  config.data.name = "mnist"
  with pytest.raises(FileNotFoundError, match="tfds build mnist --file_format=array_record"):
    tradeoff.Task(config, parallel.make_mesh())


def test_epochs_set_the_steps():
  c = tradeoff_digits.get_config()
  assert c.num_train_steps == -(-20 * 1437 // 32) == 899
  c.batch_size = 512
  c.num_epochs = 10
  assert c.num_train_steps == 29
  from experiments.studies.tradeoff.configs import mnist

  paper = mnist.get_config()
  assert (paper.batch_size, paper.num_epochs, paper.num_train_steps) == (512, 10, 1172)
  assert paper.optimizer.name == "adam" and paper.optimizer.learning_rate == 1e-3
  assert set(paper.sweep.architectures) <= set(ARCHITECTURES)
  assert {"fc_small", "fc_medium", "fc_large", "cnn_small"} <= set(paper.sweep.architectures)
  for config in (c, paper):
    lams = set(config.sweep.lams)
    assert lams >= {0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1}


def test_evaluation_covers_the_test_split_once(data_dir, tmp_path):
  """The test metrics, the dead latent units and the floors: the best a constant answer scores
  on the test split (its mean image's MSE, its most frequent class's share), by hand."""
  task, state = make_task(data_dir, architecture="cnn_small")
  task.evaluate(state, str(tmp_path))
  with open(tmp_path / "eval" / tradeoff_report.METRICS_JSON) as f:
    row = json.load(f)
  source = data.image_source("digits", "test", data_dir=data_dir, image_size=8)
  images = np.stack([source[i]["image"] for i in range(len(source))])
  labels = np.array([source[i]["label"] for i in range(len(source))])
  z, reconstructions, logits = jax.jit(task.apply)(
    state["params"], jnp.asarray(images), state["batch_stats"]
  )
  assert row["n_test"] == 360 and row["steps"] == 0  # 360 is no multiple of the batch (128)
  assert row["select"] == "last" and "last_mse" not in row
  z = np.asarray(z).reshape(len(images), -1)
  assert row["latent_size"] == 2 * 2 * 3
  assert row["dead_latent"] == np.mean(np.all(z == 0, axis=0))
  mean_image = images.astype(np.float64).mean(axis=0)  # no constant image scores better
  np.testing.assert_allclose(row["mse_floor"], np.mean((images - mean_image) ** 2), rtol=1e-9)
  constant = max(np.mean(labels == c) for c in range(10))  # nor any constant class
  assert row["accuracy_floor"] == constant > 0.1
  assert (row["architecture"], row["latent_dim"], row["lam"]) == ("cnn_small", 3, 0.3)
  np.testing.assert_allclose(row["accuracy"], np.mean(np.argmax(logits, -1) == labels))
  np.testing.assert_allclose(
    row["mse"], np.mean((np.asarray(reconstructions) - images) ** 2), rtol=1e-5
  )
  np.testing.assert_allclose(
    row["cross_entropy"], np.mean(cross_entropy(logits, jnp.asarray(labels))), rtol=1e-5
  )
  with np.load(tmp_path / "eval" / tradeoff_report.RECONSTRUCTIONS_NPZ) as saved:
    np.testing.assert_array_equal(saved["images"], images[:2])
    np.testing.assert_allclose(saved["reconstructions"], reconstructions[:2], rtol=1e-5, atol=1e-6)
  assert (tmp_path / "eval" / tradeoff_report.RECONSTRUCTIONS_PNG).exists()


def test_eight_devices_follow_one(data_dir, tmp_path):
  config = os.path.join(ROOT, "experiments", "studies", "tradeoff", "configs", "digits.py")
  overrides = [
    f"--config.data.data_dir={data_dir}",
    "--config.model.architecture=mamba",
    "--config.model.latent_dim=4",
    "--config.model.mamba.d_model=8",
    "--config.num_train_steps=4",
    "--config.log_every_steps=1",
    "--config.lam=0.5",
    "--config.data.random_rotation_degrees=15",  # per-example angles: the same on 8 devices
  ]
  losses, rows = {}, {}
  for devices in (1, 8):  # evaluated as configured: the best state, the last one beside
    workdir = str(tmp_path / str(devices))
    run_main(config, workdir, overrides, devices)
    losses[devices] = _losses(workdir)
    with open(os.path.join(workdir, "eval", tradeoff_report.METRICS_JSON)) as f:
      rows[devices] = json.load(f)
  assert len(losses[1]) == 4
  np.testing.assert_allclose(losses[8], losses[1], rtol=1e-5, atol=1e-6)
  for key in ("accuracy", "mse", "cross_entropy", "last_mse"):
    np.testing.assert_allclose(rows[8][key], rows[1][key], rtol=1e-4)
  assert rows[1]["select"] == "best" and rows[1]["last_steps"] == 4


# -- RGB data and the paper's rotation (experiments/data/augment.py) -----------------------------


def _stream_batch(source, config, step):
  return next(data.batches(source, config.batch_size, config.seed, start_step=step))


def test_rotated_batches_keep_the_unrotated_target(data_dir):
  """Training images rotated, one angle per example from (seed, stream position); the MSE's
  target is the unrotated image (the paper's code); the same step gives the same batch."""
  config = tiny(data_dir)
  config.data.random_rotation_degrees = 15
  task = tradeoff.Task(config, parallel.make_mesh())
  source = data.image_source("digits", "train", data_dir=data_dir, image_size=8)
  expected = _stream_batch(source, config, 4)
  batch = task.batch(4)
  assert set(batch) == {"image", "label", "target"}
  np.testing.assert_array_equal(batch["target"], expected["image"])
  np.testing.assert_array_equal(batch["label"], expected["label"])
  angles = augment.rotation_angles(task.augment_key, expected["index"], 15.0)
  np.testing.assert_array_equal(batch["image"], augment.rotate(expected["image"], angles))
  assert sum(not np.array_equal(a, b) for a, b in zip(batch["image"], expected["image"])) >= 4
  np.testing.assert_array_equal(task.batch(5)["image"], task.batch(5)["image"])
  np.testing.assert_array_equal(task.batch(4)["image"], batch["image"])  # asked again
  again = tradeoff.Task(config, parallel.make_mesh()).batch(4)  # a resumed run
  np.testing.assert_array_equal(again["image"], batch["image"])
  config.seed = 1  # another seed, other angles (and another order)
  other = tradeoff.Task(config, parallel.make_mesh()).batch(4)
  assert not np.array_equal(other["image"], batch["image"])

  state = task.init_state(jax.random.key(0))
  _, metrics, _ = jax.jit(task.train_gradients)(state["params"], batch)
  _, reconstructions, _ = jax.jit(task.apply)(state["params"], batch["image"])
  np.testing.assert_allclose(
    metrics["mse"], jnp.mean((reconstructions - batch["target"]) ** 2), rtol=1e-5
  )


def test_evaluation_is_not_rotated(data_dir, tmp_path):
  """The same parameters give the same test metrics and images with and without rotation."""
  rows, saved = {}, {}
  for degrees in (0, 15):
    config = tiny(data_dir)
    config.data.random_rotation_degrees = degrees
    task = tradeoff.Task(config, parallel.make_mesh())
    task.evaluate(task.init_state(jax.random.key(0)), str(tmp_path / str(degrees)))
    with open(tmp_path / str(degrees) / "eval" / tradeoff_report.METRICS_JSON) as f:
      rows[degrees] = json.load(f)
    with np.load(tmp_path / str(degrees) / "eval" / tradeoff_report.RECONSTRUCTIONS_NPZ) as npz:
      saved[degrees] = npz["images"]
  assert rows[0] == rows[15]
  np.testing.assert_array_equal(saved[0], saved[15])


def test_rgb_batches_are_rotated_in_colour(tmp_path):
  """channels = 3 on an RGB source: (batch, S, S, 3) images, each rotated with black corners."""
  from tests.experiments.data.conftest import write_fake_tfds

  write_fake_tfds(tmp_path, "cifar10", "3.0.2", (32, 32, 3), {"train": 32, "test": 8})
  config = tiny(str(tmp_path))
  config.data.name, config.data.channels, config.data.image_size = "cifar10", 3, 16
  config.data.train_examples = 32
  config.data.random_rotation_degrees = 15
  task = tradeoff.Task(config, parallel.make_mesh())
  batch = task.batch(0)
  assert batch["image"].shape == batch["target"].shape == (16, 16, 16, 3)
  target = np.asarray(batch["target"])
  assert not np.allclose(target[..., 0], target[..., 2])  # colours kept
  source = data.image_source("cifar10", "train", data_dir=tmp_path, image_size=16, channels=3)
  np.testing.assert_array_equal(target, _stream_batch(source, config, 0)["image"])
  image = np.asarray(batch["image"])
  big = np.abs(np.asarray(augment.rotation_angles(task.augment_key, np.arange(16), 15.0))) > 5
  for i in np.nonzero(big)[0]:  # a corner of an image rotated by over 5 degrees comes from outside
    np.testing.assert_array_equal(image[i, 0, 0], [-1.0, -1.0, -1.0])


def test_channels_and_rotation_checked(data_dir):
  mesh = parallel.make_mesh()
  config = tiny(data_dir)
  config.data.channels = 3
  with pytest.raises(ValueError, match=r"config\.data\.channels = 3.*grayscale"):
    tradeoff.Task(config, mesh)
  config = tiny(data_dir)
  config.data.channels = 2
  with pytest.raises(ValueError, match=r"config\.data\.channels = 2"):
    tradeoff.Task(config, mesh)
  config = tiny(data_dir)
  config.data.random_rotation_degrees = -5.0
  with pytest.raises(ValueError, match=r"config\.data\.random_rotation_degrees = -5"):
    tradeoff.Task(config, mesh)


def test_cifar10_config_is_the_papers_and_fails_fast_without_data(tmp_path):
  from experiments.studies.tradeoff.configs import cifar10

  config = cifar10.get_config()
  assert (config.data.name, config.data.channels, config.data.image_size) == ("cifar10", 3, 32)
  assert config.data.random_rotation_degrees == 15 and config.data.train_examples == 50_000
  assert (config.batch_size, config.num_epochs, config.num_train_steps) == (512, 10, 977)
  assert config.optimizer.name == "adam" and config.optimizer.learning_rate == 1e-3
  assert (config.model.architecture, config.model.latent_dim) == ("cnn_large", 128)
  assert tuple(config.sweep.architectures) == ("cnn_large",)
  assert tuple(config.sweep.seeds) == (0, 1, 2)
  config.data.data_dir = str(tmp_path)  # nothing prepared there
  mesh = parallel.make_mesh()
  start = time.perf_counter()
  with pytest.raises(FileNotFoundError, match="tfds build cifar10 --file_format=array_record"):
    tradeoff.Task(config, mesh)
  assert time.perf_counter() - start < 1.0
