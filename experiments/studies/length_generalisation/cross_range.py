"""Study A's stage analysis across training ranges, the paper's evidence that the strategy follows
the range (docs/design.md section 6A): for one fixed image set, what the models trained on each
range reconstruct after k patches, side by side, with the query MSE of each stage.

The stages of a range with top T are k = 1, 4, T and 4T patches of a sequence of L = 4T (the
longest L of the stage analysis, told to the length-aware models). sweep.py writes, from its runs:

  WORKDIR/stages_across_ranges.csv          model, train_min, train_max, stage, k, L, mse_mean,
                                            lo, hi, seeds (the mean query MSE over seeds, on the
                                            evaluation images of stages.csv, and its 90% band)
  WORKDIR/stages_across_ranges_<model>.png  per image, one row per training range: the image and
                                            the reconstructions after each stage (the first
                                            seed's model; titles: k and the stage's mean MSE)

The images and their context patches are the same in every row: the first config.eval.grid_images
evaluation images, the patches drawn from the seed's grid key (report.grid_context), so a range's
row differs from another's only by the model.
"""

import os

import jax.numpy as jnp
import matplotlib
import numpy as np

from experiments import data, train
from experiments.bootstrap import seed_band
from experiments.studies.length_generalisation import report

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

CSV = "stages_across_ranges.csv"
COLUMNS = ("model", "train_min", "train_max", "stage", "k", "L", "mse_mean", "lo", "hi", "seeds")


def stages(train_max):
  """{stage name: k} of a range with top train_max, in reading order."""
  return {"1": 1, "4": 4, "top": train_max, "4x top": 4 * train_max}


def summarise(stage_rows, ranges, level):
  """Rows of COLUMNS from the sweep's stages.csv rows: per model, range and stage, the mean MSE
  over seeds after k of L = 4x top patches and its `level` bootstrap band."""
  summary = []
  models = [m for m in dict.fromkeys(r["model"] for r in stage_rows) if m != report.MEAN_IMAGE]
  for model in models:
    for lo, hi in ranges:
      for stage, k in stages(hi).items():
        values = [
          r["mse"]
          for r in stage_rows
          if (r["model"], int(r["train_min"]), int(r["train_max"])) == (model, lo, hi)
          and (r["L"], r["k"]) == (4 * hi, k)
        ]
        if not values:
          raise ValueError(f"stages.csv has no {model} {lo}..{hi} row at k = {k} of L = {4 * hi}")
        mean, band_lo, band_hi = seed_band(values, level=level)
        summary.append(
          dict(
            model=model,
            train_min=lo,
            train_max=hi,
            stage=stage,
            k=k,
            L=4 * hi,
            mse_mean=mean,
            lo=band_lo,
            hi=band_hi,
            seeds=len(values),
          )
        )
  return summary


def reconstructions(run_dir):
  """(model names, images (n, S, S), {model: {k: reconstructions (n, S', S')}}) of one finished
  run, after k of L = 4x its training top patches, k over its stages."""
  task, state = train.restore_run(run_dir)
  config = task.config
  top = config.sequence.train_length_max
  size, patch = config.data.image_size, task.patch_size
  source = task.augmented(data.open_split(config, config.data.eval_split))
  count = min(config.eval.grid_images, len(source))
  images = np.stack([source[i]["image"] for i in range(count)])
  context = report.grid_context(task, images, report.grid_key(config))
  _, positions = report.tile_queries(size, patch)
  query = jnp.broadcast_to(jnp.asarray(positions), (count,) + positions.shape)
  out = {}
  for name in task.names:
    predict = report.predictor(task, state, name)
    out[name] = {
      k: [
        report.assemble(tiles, size, patch)
        for tiles in predict(
          context["context_patches"], context["context_positions"], query, k, 4 * top
        )
      ]
      for k in stages(top).values()
    }
  return task.names, images, out


def plot(summary, run_dirs, out_dir):
  """One figure per model: stages_across_ranges_<model>.png (see the module docstring).
  run_dirs: {(train_min, train_max): the first seed's run directory}."""
  ranges = list(run_dirs)
  runs = {r: reconstructions(run_dirs[r]) for r in ranges}
  names, images, _ = runs[ranges[0]]
  mse = {(r["model"], r["train_min"], r["train_max"], r["k"]): r["mse_mean"] for r in summary}
  width = 1 + 4
  for name in names:
    rows = len(images) * len(ranges)
    fig, axes = plt.subplots(rows, width, figsize=(1.5 * width, 1.45 * rows), squeeze=False)
    for i, image in enumerate(images):
      for j, (lo, hi) in enumerate(ranges):
        row = axes[i * len(ranges) + j]
        row[0].imshow(image, cmap="gray", vmin=-1, vmax=1)
        row[0].set_title(f"trained {lo}..{hi}", fontsize=7)
        for col, (stage, k) in enumerate(stages(hi).items()):
          row[1 + col].imshow(runs[(lo, hi)][2][name][k][i], cmap="gray", vmin=-1, vmax=1)
          row[1 + col].set_title(f"k={k} ({stage}): {mse[(name, lo, hi, k)]:.3f}", fontsize=7)
    for ax in axes.ravel():
      ax.set_axis_off()
    fig.suptitle(
      f"{name}: reconstruction after k of L = 4x top patches, per training range\n"
      "(first seed's model; title: k and the query MSE over seeds)",
      fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, f"stages_across_ranges_{name}.png"), dpi=110)
    plt.close(fig)
