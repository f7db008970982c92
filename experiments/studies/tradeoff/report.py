"""Study C's per-run evaluation, in workdir/eval/:

metrics.json (architecture, latent_dim, lam, seed, accuracy, mse, cross_entropy, n_test, steps:
the test split's accuracy, mean squared pixel error and mean cross-entropy, on unrotated images),
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
from experiments.studies.tradeoff.networks import cross_entropy, reconstruction_error

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

METRICS_JSON = "metrics.json"
RECONSTRUCTIONS_NPZ = "reconstructions.npz"
RECONSTRUCTIONS_PNG = "reconstructions.png"


def test_metrics(task, state, source):
  """{accuracy, mse, cross_entropy, n_test} over the whole split, data parallel."""

  @jax.jit
  def sums(params, batch):
    _, reconstructions, logits = task.apply(params, batch["image"])
    weight = batch["weight"]
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {
      "mse": jnp.sum(reconstruction_error(reconstructions, batch["image"]) * weight),
      "cross_entropy": jnp.sum(cross_entropy(logits, batch["label"]) * weight),
      "correct": jnp.sum(correct * weight),
      "count": jnp.sum(weight),
    }

  num_classes = task.config.data.num_classes
  totals = {"mse": 0.0, "cross_entropy": 0.0, "correct": 0.0, "count": 0.0}
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
    for key, value in sums(state["params"], batch).items():
      totals[key] += float(value)
  count = totals["count"]
  return {
    "accuracy": totals["correct"] / count,
    "mse": totals["mse"] / count,
    "cross_entropy": totals["cross_entropy"] / count,
    "n_test": int(count),
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


def write(task, state, source, out_dir):
  """Evaluates on `source` (the test split) and writes out_dir; returns the metrics row."""
  os.makedirs(out_dir, exist_ok=True)
  config = task.config
  row = {
    "architecture": config.model.architecture,
    "latent_dim": config.model.latent_dim,
    "lam": task.lam,
    "seed": config.seed,
    **test_metrics(task, state, source),
    "steps": int(state["step"]),
  }
  if jax.process_index() == 0:
    count = min(config.eval.num_images, len(source))
    images = np.stack([source[i]["image"] for i in range(count)])
    reconstructions = np.asarray(task.apply(state["params"], jnp.asarray(images))[1])
    write_reconstructions(images, reconstructions, row, out_dir)
    path = os.path.join(out_dir, METRICS_JSON)
    with open(path + ".tmp", "w") as f:
      json.dump(row, f, indent=2)
    os.replace(path + ".tmp", path)
  return row
