"""Study A's evaluation outputs in workdir/eval/:

length_sweep.csv (model, L, mse, n_images; plus the `mean_image` row: the training set's mean
image read at the same queries, the floor every model must clear), length_sweep.png (MSE against
L per model, the training range shaded) and reconstructions_<model>.png (what the model saw
after k context patches and what it reconstructs, tile by tile, for a few evaluation images).
The task adds discretization.csv (experiments/learned_alpha.py).
"""

import csv
import functools
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
MEAN_IMAGE = "mean_image"  # the baseline row: predict the training mean image at every query


def mean_image(source):
  """The pixel-wise mean (S, S) of every image of `source` (the training split)."""
  total = None
  for i in range(len(source)):
    image = np.asarray(source[i]["image"], np.float64)
    total = image if total is None else total + image
  if total is None:
    raise ValueError("Cannot average an empty training split.")
  return (total / len(source)).astype(np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _error_sums(graphdef, params, batch):
  """(weighted error sum, weight sum) of a batch; one compile per (model structure, shapes):
  the batch's n_context and total_length are traced, so one compile serves every L and k."""
  error = squared_error(nnx.merge(graphdef, params), batch)
  return jnp.sum(error * batch["weight"]), jnp.sum(batch["weight"])


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, params, *args):
  """A model's jitted forward: one compile per (model structure, shapes), shared by the grids;
  n_context and total_length are traced."""
  return nnx.merge(graphdef, params)(*args)


def predictor(task, state, name):
  """Model `name`'s forward (context_patches, context_positions, query_positions, n_context,
  total_length) -> patches as numpy."""
  graphdef, params = task.graphdef(name), state["params"][name]
  return lambda *args: np.asarray(_forward(graphdef, params, *args))


def _sequences(task, images, key, context_length):
  """This host's sequences for `images` at one context length (numpy, by key and index)."""
  sequences = patches.patch_sequences(
    jnp.asarray(images["image"]),
    key,
    context_length,
    task.config.sequence.num_queries,
    task.patch_size,
    images["index"],
  )
  return {k: np.asarray(v) for k, v in sequences.items()}


def _mean_error(task, name, params, contexts, n_context, total_length):
  """Model `name`'s weighted mean error over prebuilt (sequences, weight) batches, after
  n_context of total_length patches."""
  graphdef = task.graphdef(name)
  total = count = 0.0
  for local, weight in contexts:
    batch = dict(local, weight=weight)
    batch["n_context"] = np.full(weight.shape, n_context, np.int32)
    batch["total_length"] = np.full(weight.shape, total_length, np.int32)
    err, n = _error_sums(graphdef, params, parallel.global_batch(batch, task.mesh))
    total, count = total + float(err), count + float(n)
  return total / count, int(count)


def length_sweep(task, state, source, lengths=None, num_examples=None, baseline=None):
  """Rows {model, L, mse, n_images}: the mean squared pixel error at the queries, over the first
  num_examples images of source (default config.eval.num_examples) at each of lengths (default
  the task's eval_lengths). With `baseline` (an (S, S) image, e.g. mean_image of the training
  split), rows of model MEAN_IMAGE score that image read at the same queries.

  The contexts are built once at the longest L; a shorter L is its prefix (the sequences'
  prefix property) with the rest left-padded away, so each model compiles once.
  """
  config = task.config
  lengths = task.eval_lengths if lengths is None else lengths
  num_examples = config.eval.num_examples if num_examples is None else num_examples
  n_images = min(num_examples, len(source))
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
  batches = list(data.evaluation_batches(source, config.eval.batch_size, n_images, task.mesh.size))
  contexts = [(_sequences(task, images, key, max(lengths)), weight) for images, weight in batches]
  rows = []
  for name in task.names:
    for length in lengths:
      mse, count = _mean_error(task, name, state["params"][name], contexts, length, length)
      rows.append({"model": name, "L": length, "mse": mse, "n_images": count})
  if baseline is not None:
    rows += baseline_rows(task, baseline, batches, key, lengths)
  return rows


def stage_grid(total_length):
  """k on a log grid for the stage analysis: 1, 2, 4, ... below total_length, then
  total_length."""
  ks = [1 << i for i in range(total_length.bit_length()) if 1 << i < total_length]
  return ks + [total_length]


def stage_ks(total_length, train_max):
  """The k of the stage analysis at L = total_length: stage_grid(L) and the training maximum."""
  return sorted(
    set(stage_grid(total_length)) | ({train_max} if train_max <= total_length else set())
  )


def stage_lengths(config):
  """The L of the stage analysis: config.eval.stage_multiples x the longest training length."""
  multiples = config.eval.get("stage_multiples", (1, 4))  # absent from older config.json files
  return [m * config.sequence.train_length_max for m in multiples]


def stages(task, state, source, baseline=None):
  """Rows {model, train_min, train_max, seed, L, k, mse}: the query MSE after k of L context
  patches, with L given to the models that take it (the length token, the length-adaptive
  step), for each L of stage_lengths and k of stage_ks(L, train max). With `baseline`,
  MEAN_IMAGE rows."""
  config = task.config
  seq = config.sequence
  n_images = min(config.eval.num_examples, len(source))
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
  batches = list(data.evaluation_batches(source, config.eval.batch_size, n_images, task.mesh.size))
  common = {"train_min": seq.train_length_min, "train_max": seq.train_length_max}
  common["seed"] = config.seed
  totals = stage_lengths(config)
  # one context for every L: the first k patches of the longest (as long as the length sweep's,
  # so the evaluation compiles once per model)
  bucket = max(totals + list(task.eval_lengths))
  contexts = [(_sequences(task, images, key, bucket), weight) for images, weight in batches]
  rows = []
  for total in totals:
    ks = stage_ks(total, seq.train_length_max)
    for name in task.names:
      for k in ks:
        mse, _ = _mean_error(task, name, state["params"][name], contexts, k, total)
        rows.append(dict(common, model=name, L=total, k=k, mse=mse))
    if baseline is not None:
      mse = baseline_rows(task, baseline, batches, key, [total])[0]["mse"]
      rows += [dict(common, model=MEAN_IMAGE, L=total, k=k, mse=mse) for k in ks]
  return rows


def baseline_rows(task, baseline, batches, key, lengths):
  """The MEAN_IMAGE rows: `baseline` read at each example's queries (the query centres depend on
  the key and the example index only, so building the sequences from copies of the baseline
  gives its patches at exactly the queries the models answered)."""
  config = task.config
  kwargs = dict(num_queries=config.sequence.num_queries, patch_size=task.patch_size)
  sums = jax.jit(lambda b: (jnp.sum(b["error"] * b["weight"]), jnp.sum(b["weight"])))
  rows = []
  for length in lengths:
    total = count = 0.0
    for images, weight in batches:
      index = jnp.asarray(images["index"])
      truth = patches.patch_sequences(
        jnp.asarray(images["image"]), key, 1, **kwargs, example_index=index
      )
      copies = jnp.broadcast_to(jnp.asarray(baseline), images["image"].shape)
      guess = patches.patch_sequences(copies, key, 1, **kwargs, example_index=index)
      error = jnp.mean(jnp.square(guess["query_targets"] - truth["query_targets"]), axis=(1, 2))
      local = {"error": np.asarray(error), "weight": np.asarray(weight, np.float32)}
      err, n = sums(parallel.global_batch(local, task.mesh))
      total, count = total + float(err), count + float(n)
    rows.append({"model": MEAN_IMAGE, "L": length, "mse": total / count, "n_images": int(count)})
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
    style = dict(color="0.3", linestyle="--") if name == MEAN_IMAGE else dict(marker="o")
    ax.plot(*zip(*points), label=name, **style)
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


def grid_key(config):
  """The key of the grids' context patches: the same for every run of one seed."""
  return jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)


def grid_context(task, images, key):
  """The grids' contexts: one at the longest length either grid shows (the first k patches are
  the context of length k), so the grids compile once per model."""
  longest = max(list(task.grid_lengths) + stage_lengths(task.config))
  return patches.patch_sequences(jnp.asarray(images), key, longest, 1, task.patch_size)


def write_grids(task, state, source, out_dir):
  config = task.config
  size, patch = config.data.image_size, task.patch_size
  count = min(config.eval.grid_images, len(source))
  images = np.stack([source[i]["image"] for i in range(count)])
  centres, positions = tile_queries(size, patch)
  key = grid_key(config)
  lengths = task.grid_lengths
  context = grid_context(task, images, key)
  context_centres = np.rint(
    np.asarray(context["context_positions"]) * patches.POSITION_SCALE * size + size / 2
  ).astype(int)
  query = jnp.broadcast_to(jnp.asarray(positions), (count,) + positions.shape)
  cmap = plt.get_cmap("gray").with_extremes(bad="0.6")
  for name in task.names:
    predict = predictor(task, state, name)
    fig, axes = plt.subplots(
      count,
      1 + 2 * len(lengths),
      figsize=(1.3 * (1 + 2 * len(lengths)), 1.3 * count),
      squeeze=False,
    )
    for col, k in enumerate(lengths):
      tiles = predict(context["context_patches"], context["context_positions"], query, k, k)
      for row in range(count):
        axes[row, 1 + 2 * col].imshow(
          seen_image(images[row], context_centres[row, :k], patch), cmap=cmap, vmin=-1, vmax=1
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


STAGES_CSV = "stages.csv"
STAGES_PNG = "stages.png"
STAGES_COLUMNS = ("model", "train_min", "train_max", "seed", "L", "k", "mse")


def write_stages(rows, config, out_dir):
  """stages.csv and stages.png: one panel per model, MSE against k, one curve per L."""
  with open(os.path.join(out_dir, STAGES_CSV), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=STAGES_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  names = [n for n in dict.fromkeys(r["model"] for r in rows) if n != MEAN_IMAGE]
  fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4), squeeze=False)
  for ax, name in zip(axes[0], names):
    for i, total in enumerate(dict.fromkeys(r["L"] for r in rows)):
      for model, style in ((name, dict(marker="o")), (MEAN_IMAGE, dict(linestyle="--"))):
        points = [(r["k"], r["mse"]) for r in rows if r["model"] == model and r["L"] == total]
        label = f"L = {total}" if model == name else None
        ax.plot(*zip(*points), color=plt.get_cmap("tab10")(i), label=label, **style)
    ax.axvspan(config.sequence.train_length_min, config.sequence.train_length_max, color="0.92")
    ax.set_xscale("log")
    ax.set_xlabel("patches read, k")
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=7)
  axes[0, 0].set_ylabel("query MSE after k of L patches")
  fig.suptitle("Stages: reconstruction after k of L patches (dashed: mean image)", fontsize=10)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, STAGES_PNG), dpi=120)
  plt.close(fig)


def write_stage_grids(task, state, source, out_dir):
  """stages_<model>.png: for a few images and each L of the stage analysis, what the model
  reconstructs after k of L patches (k on a coarse log grid)."""
  config = task.config
  size, patch = config.data.image_size, task.patch_size
  count = min(config.eval.grid_images, len(source))
  images = np.stack([source[i]["image"] for i in range(count)])
  _, positions = tile_queries(size, patch)
  query = jnp.broadcast_to(jnp.asarray(positions), (count,) + positions.shape)
  key = grid_key(config)
  context = grid_context(task, images, key)
  totals = stage_lengths(config)
  columns = {}
  for total in totals:  # up to 4 k from 1 to L, evenly spread on the log grid
    ks = stage_grid(total)
    columns[total] = list(dict.fromkeys(ks[round(i * (len(ks) - 1) / 3)] for i in range(4)))
  width = 1 + max(len(c) for c in columns.values())
  for name in task.names:
    predict = predictor(task, state, name)
    fig, axes = plt.subplots(
      count * len(totals), width, figsize=(1.3 * width, 1.3 * count * len(totals)), squeeze=False
    )
    for t, total in enumerate(totals):
      for col, k in enumerate(columns[total]):
        tiles = predict(context["context_patches"], context["context_positions"], query, k, total)
        for i in range(count):
          ax = axes[t * count + i, 1 + col]
          ax.imshow(assemble(tiles[i], size, patch), cmap="gray", vmin=-1, vmax=1)
          if i == 0:
            ax.set_title(f"k={k} of L={total}", fontsize=7)
      for i in range(count):
        axes[t * count + i, 0].imshow(images[i], cmap="gray", vmin=-1, vmax=1)
    for ax in axes.ravel():
      ax.set_axis_off()
    fig.suptitle(f"{name}: reconstruction after k of L patches", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, f"stages_{name}.png"), dpi=110)
    plt.close(fig)


def write(task, state, source, out_dir):
  """Writes the sweep, the stage analysis and the grids for `source` (the evaluation split);
  returns the sweep's rows."""
  os.makedirs(out_dir, exist_ok=True)
  baseline = mean_image(task.augmented(task.source))
  rows = length_sweep(task, state, source, baseline=baseline)
  stage_rows = stages(task, state, source, baseline=baseline)
  if jax.process_index() == 0:
    write_grids(task, state, source, out_dir)
    write_stage_grids(task, state, source, out_dir)
    write_sweep(rows, task.config, out_dir)
    write_stages(stage_rows, task.config, out_dir)  # last: it marks a finished evaluation
  return rows
