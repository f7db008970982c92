"""Study C's per-run evaluation, in workdir/eval/:

metrics.json: architecture, latent_dim, lam, seed; accuracy, mse, cross_entropy, n_test, steps
(the test split's accuracy, mean squared pixel error and mean cross-entropy, on unrotated
images, of the state evaluated: `select` says which, "best" or "last", and steps is its step);
latent_size (values per image) and dead_latent (the share of them that is 0 on every test image:
a dead ReLU unit); the floors a network must beat to have learnt anything from its latent
(`floors`: the best a constant answer scores on the test split), mse_floor (the MSE of the test
images' mean image) and accuracy_floor (the share of the most frequent test class); with
select = "best", last_accuracy, last_mse, last_cross_entropy, last_dead_latent and last_steps of
the state at the end of training beside them;
reconstructions.npz (the first config.eval.num_images test images and their reconstructions,
(S, S) or (S, S, 3), which the sweep's figure assembles) and reconstructions.png. metrics.json is
written last, atomically: its presence marks a finished run (the sweep skips those).
"""

import json
import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from experiments import data, parallel

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

METRICS_JSON = "metrics.json"
RECONSTRUCTIONS_NPZ = "reconstructions.npz"
RECONSTRUCTIONS_PNG = "reconstructions.png"


def test_metrics(task, state, source):
  """{accuracy, mse, cross_entropy, n_test, latent_size, dead_latent} over the whole split, data
  parallel (task.metric_sums, compiled once per task)."""
  num_classes = task.config.data.num_classes
  totals = {"mse": 0.0, "cross_entropy": 0.0, "correct": 0.0, "count": 0.0}
  latent_max = None
  for images, weight in data.evaluation_batches(
    source, task.config.eval.batch_size, len(source), task.mesh.size
  ):
    if images["label"].min() < 0 or images["label"].max() >= num_classes:
      raise ValueError(
        f"config.data.num_classes = {num_classes}, but the evaluation split has "
        f"label {images['label'].max()}"
      )
    batch = parallel.global_batch(
      {"image": images["image"], "label": images["label"], "weight": weight}, task.mesh
    )
    sums = task.metric_sums(state["params"], state.get("batch_stats"), batch)
    largest = np.asarray(sums.pop("latent_max"))
    latent_max = largest if latent_max is None else np.maximum(latent_max, largest)
    for key, value in sums.items():
      totals[key] += float(value)
  count = totals["count"]
  return {
    "accuracy": totals["correct"] / count,
    "mse": totals["mse"] / count,
    "cross_entropy": totals["cross_entropy"] / count,
    "n_test": int(count),
    "latent_size": int(latent_max.size),
    "dead_latent": float(np.mean(latent_max == 0.0)),
  }


def floors(source):
  """{mse_floor, accuracy_floor}: the best a constant answer scores on `source` (the test split):
  the MSE of its own mean image (no constant image does better) and the share of its most
  frequent class. A network whose latent carries nothing (every unit dead) outputs a constant
  and so lands on or below them; the training split's mean image would let it through (a
  decoder fed a dead latent learns that mean and scores 0.294 against its 0.295 on the digits)."""
  images = np.stack([np.asarray(source[i]["image"], np.float64) for i in range(len(source))])
  labels = np.array([int(source[i]["label"]) for i in range(len(source))])
  return {
    "mse_floor": float(np.mean(np.square(images - images.mean(axis=0)))),
    "accuracy_floor": float(np.bincount(labels).max() / len(labels)),
  }


def show_image(ax, image):
  """An image in [-1, 1] on `ax`: (S, S) in gray, (S, S, 3) in colour (clipped to [-1, 1])."""
  image = np.asarray(image)
  if image.ndim == 3:
    ax.imshow(np.clip((image + 1.0) / 2.0, 0.0, 1.0))
  else:
    ax.imshow(image, cmap="gray", vmin=-1, vmax=1)


def write_reconstructions(images, reconstructions, row, out_dir):
  np.savez(
    os.path.join(out_dir, RECONSTRUCTIONS_NPZ), images=images, reconstructions=reconstructions
  )
  count = len(images)
  fig, axes = plt.subplots(2, count, figsize=(0.9 * count, 2.1), squeeze=False)
  for i in range(count):
    show_image(axes[0, i], images[i])
    show_image(axes[1, i], reconstructions[i])
  for ax in axes.ravel():
    ax.set_axis_off()
  fig.suptitle(
    f"{row['architecture']}, latent {row['latent_dim']}, lambda {row['lam']:g}: "
    f"accuracy {row['accuracy']:.3f}, MSE {row['mse']:.4f} (top: test images)",
    fontsize=7,
  )
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, RECONSTRUCTIONS_PNG), dpi=110)
  plt.close(fig)


def write(task, state, source, out_dir, last=None):
  """Evaluates `state` on `source` (the test split) and writes out_dir; with `last` (the state
  at the end of training, when `state` is the best one) its metrics beside, as last_*. Returns
  the metrics row."""
  os.makedirs(out_dir, exist_ok=True)
  config = task.config
  row = {
    "architecture": config.model.architecture,
    "latent_dim": config.model.latent_dim,
    "lam": task.lam,
    "seed": config.seed,
    **test_metrics(task, state, source),
    "steps": int(state["step"]),
    "select": "last" if last is None else "best",
    **floors(source),
  }
  if last is not None:
    last_metrics = test_metrics(task, last, source)
    for key in ("accuracy", "mse", "cross_entropy", "dead_latent"):
      row[f"last_{key}"] = last_metrics[key]
    row["last_steps"] = int(last["step"])
  if jax.process_index() == 0:
    count = min(config.eval.num_images, len(source))
    images = np.stack([source[i]["image"] for i in range(count)])
    reconstructions = np.asarray(
      task.apply(state["params"], jnp.asarray(images), state.get("batch_stats"))[1]
    )
    write_reconstructions(images, reconstructions, row, out_dir)
    path = os.path.join(out_dir, METRICS_JSON)
    with open(path + ".tmp", "w") as f:
      json.dump(row, f, indent=2)
    os.replace(path + ".tmp", path)
  return row
