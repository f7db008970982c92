"""Study A's evaluation outputs in workdir/eval/:

length_sweep.csv (model, L, mse, n_images), length_sweep.png (MSE against L per model, the
training range shaded) and reconstructions_<model>.png (what the model saw after k context
patches and what it reconstructs, tile by tile, for a few evaluation images). The task adds
discretization.csv (experiments/learned_alpha.py).
"""

import csv
import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from flax import nnx

from experiments import data, parallel
from experiments.studies.length_generalisation import patches
from experiments.studies.length_generalisation.model import squared_error

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

SWEEP_CSV = "length_sweep.csv"
SWEEP_PNG = "length_sweep.png"


def length_sweep(task, state, source, lengths=None, num_examples=None):
  """Rows {model, L, mse, n_images}: the mean squared pixel error at the queries, over the first
  num_examples images of source (default config.eval.num_examples) at each of lengths (default
  the task's eval_lengths)."""
  config = task.config
  lengths = task.eval_lengths if lengths is None else lengths
  num_examples = config.eval.num_examples if num_examples is None else num_examples
  n_images = min(num_examples, len(source))
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
  batches = list(data.evaluation_batches(source, config.eval.batch_size, n_images, task.mesh.size))
  rows = []
  for name in task.names:
    graphdef = task.graphdef(name)

    @jax.jit
    def error_sums(params, batch, graphdef=graphdef):
      error = squared_error(nnx.merge(graphdef, params), batch)
      return jnp.sum(error * batch["weight"]), jnp.sum(batch["weight"])

    for length in lengths:
      total = count = 0.0
      for images, weight in batches:
        sequences = patches.patch_sequences(
          jnp.asarray(images["image"]),
          key,
          length,
          config.sequence.num_queries,
          task.patch_size,
          images["index"],
        )
        local = {k: np.asarray(v) for k, v in sequences.items()}
        local["weight"] = weight
        err, n = error_sums(state["params"][name], parallel.global_batch(local, task.mesh))
        total, count = total + float(err), count + float(n)
      rows.append({"model": name, "L": length, "mse": total / count, "n_images": int(count)})
  return rows


def write_sweep(rows, config, out_dir):
  with open(os.path.join(out_dir, SWEEP_CSV), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=["model", "L", "mse", "n_images"])
    writer.writeheader()
    writer.writerows(rows)
  fig, ax = plt.subplots(figsize=(6, 4))
  seq = config.sequence
  ax.axvspan(seq.train_length_min, seq.train_length_max, color="0.9", label="training range")
  for name in dict.fromkeys(r["model"] for r in rows):
    points = [(r["L"], r["mse"]) for r in rows if r["model"] == name]
    ax.plot(*zip(*points), marker="o", label=name)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("context patches L")
  ax.set_ylabel("reconstruction MSE at the queries")
  ax.set_title(f"{config.data.name}, {config.data.image_size}px: MSE against context length")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, SWEEP_PNG), dpi=120)
  plt.close(fig)


def tile_queries(image_size, patch_size):
  """Centres and positions of the non-overlapping tiles that cover the image, row-major."""
  starts = np.arange(0, image_size - patch_size + 1, patch_size)
  ys, xs = np.meshgrid(starts + patch_size // 2, starts + patch_size // 2, indexing="ij")
  centres = np.stack([xs.ravel(), ys.ravel()], axis=-1)
  return centres, np.asarray(patches.positions(jnp.asarray(centres), image_size))


def assemble(tiles, image_size, patch_size):
  """(n_tiles, P*P) row-major tiles -> (S', S') image (S' = whole tiles)."""
  per_side = image_size // patch_size
  grid = tiles.reshape(per_side, per_side, patch_size, patch_size)
  return grid.transpose(0, 2, 1, 3).reshape(per_side * patch_size, per_side * patch_size)


def seen_image(image, centres, patch_size):
  """The image with only the context patches visible (the rest grey)."""
  seen = np.full_like(image, np.nan)
  for x, y in np.asarray(centres):
    rows = slice(y - patch_size // 2, y + patch_size // 2)
    cols = slice(x - patch_size // 2, x + patch_size // 2)
    seen[rows, cols] = image[rows, cols]
  return seen


def write_grids(task, state, source, out_dir):
  config = task.config
  size, patch = config.data.image_size, task.patch_size
  count = min(config.eval.grid_images, len(source))
  images = np.stack([source[i]["image"] for i in range(count)])
  centres, positions = tile_queries(size, patch)
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)
  lengths = task.grid_lengths
  contexts = {k: patches.patch_sequences(jnp.asarray(images), key, k, 1, patch) for k in lengths}
  cmap = plt.get_cmap("gray").with_extremes(bad="0.6")
  for name in task.names:
    model = task.model(state, name)
    fig, axes = plt.subplots(
      count,
      1 + 2 * len(lengths),
      figsize=(1.3 * (1 + 2 * len(lengths)), 1.3 * count),
      squeeze=False,
    )
    for col, k in enumerate(lengths):
      context = contexts[k]
      query = jnp.broadcast_to(jnp.asarray(positions), (count,) + positions.shape)
      tiles = np.asarray(model(context["context_patches"], context["context_positions"], query))
      context_centres = np.rint(
        np.asarray(context["context_positions"]) * patches.POSITION_SCALE * size + size / 2
      ).astype(int)
      for row in range(count):
        axes[row, 1 + 2 * col].imshow(
          seen_image(images[row], context_centres[row], patch), cmap=cmap, vmin=-1, vmax=1
        )
        axes[row, 2 + 2 * col].imshow(
          assemble(tiles[row], size, patch), cmap="gray", vmin=-1, vmax=1
        )
      axes[0, 1 + 2 * col].set_title(f"seen, L={k}", fontsize=7)
      axes[0, 2 + 2 * col].set_title(f"recon., L={k}", fontsize=7)
    for row in range(count):
      axes[row, 0].imshow(images[row], cmap="gray", vmin=-1, vmax=1)
    axes[0, 0].set_title("image", fontsize=7)
    for ax in axes.ravel():
      ax.set_axis_off()
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, f"reconstructions_{name}.png"), dpi=110)
    plt.close(fig)


def write(task, state, source, out_dir):
  """Writes the sweep and the grids for `source` (the evaluation split); returns the rows."""
  os.makedirs(out_dir, exist_ok=True)
  rows = length_sweep(task, state, source)
  if jax.process_index() == 0:
    write_sweep(rows, task.config, out_dir)
    write_grids(task, state, source, out_dir)
  return rows
