r"""Study C's sweep in one command: every (architecture, latent size, lambda) of config.sweep.

  python -m experiments.studies.tradeoff.sweep \
      --config=experiments/studies/tradeoff/configs/digits.py --workdir=runs/tradeoff

Each grid point is an ordinary training run (train.train_and_evaluate) in its own directory,
WORKDIR/runs/<architecture>_z<latent>_lam<lambda>/, with the config the sweep derived for it (the
`sweep` section removed, model.architecture, model.latent_dim and lam set). Running the command
again resumes: finished runs (eval/metrics.json present) are read back, a partial one continues
from its checkpoint, and a run directory holding a different config is refused. Then:

  WORKDIR/tradeoff.csv          one row per run: architecture, latent_dim, lam, accuracy, mse,
                                cross_entropy (test split), n_test, steps;
  WORKDIR/tradeoff.png          accuracy against MSE, one curve per architecture and latent size,
                                points labelled by lambda; and each against lambda;
  WORKDIR/reconstructions.png   a few test images reconstructed at every lambda, per
                                architecture and latent size.

The flags are those of experiments.main (--config, --workdir, --distributed, ...).
"""

import json
import os
import time

import jax
import matplotlib
import ml_collections
import numpy as np
from absl import app, logging

from experiments import config_values, sweep_runs
from experiments.studies.tradeoff import report as tradeoff_report
from experiments.studies.tradeoff.networks import ARCHITECTURES
from experiments.studies.tradeoff.task import check_lam

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

RUNS_DIR = "runs"
CSV_FILE = "tradeoff.csv"
TRADEOFF_PNG = "tradeoff.png"
RECONSTRUCTIONS_PNG = "reconstructions.png"
COLUMNS = (
  "architecture",
  "latent_dim",
  "lam",
  "accuracy",
  "mse",
  "cross_entropy",
  "n_test",
  "steps",
)


def grid(config):
  """[(architecture, latent_dim, lam)] of config.sweep, architectures outermost."""
  if config.study != "tradeoff":
    raise ValueError(f"config.study = {config.study!r}; the sweep runs study C ('tradeoff')")
  sweep = config.sweep
  architectures = sweep.architectures
  if (
    isinstance(architectures, str)
    or not architectures
    or any(a not in ARCHITECTURES for a in architectures)
  ):
    raise ValueError(
      f"config.sweep.architectures = {architectures!r}; expected a tuple of "
      f"names from {ARCHITECTURES}"
    )
  config_values.distinct(list(architectures), "config.sweep.architectures")
  latent_dims = config_values.distinct(
    config_values.positive_ints(sweep.latent_dims, "config.sweep.latent_dims"),
    "config.sweep.latent_dims",
  )
  if isinstance(sweep.lams, str) or not isinstance(sweep.lams, (tuple, list)) or not sweep.lams:
    raise ValueError(f"config.sweep.lams = {sweep.lams!r}; expected a tuple of numbers in [0, 1]")
  lams = [check_lam(lam, f"config.sweep.lams entry {i}") for i, lam in enumerate(sweep.lams)]
  lams = config_values.distinct(lams, "config.sweep.lams")
  return [(a, z, lam) for a in architectures for z in latent_dims for lam in lams]


def run_name(architecture, latent_dim, lam):
  return f"{architecture}_z{latent_dim}_lam{lam:g}"


def run_config(config, architecture, latent_dim, lam):
  """The config of one grid point: references resolved, `sweep` removed, the point set."""
  c = ml_collections.ConfigDict(config.to_dict())
  del c["sweep"]
  c.model.architecture, c.model.latent_dim, c.lam = architecture, latent_dim, lam
  return c


def run_one(config, workdir):
  """Trains and evaluates one run unless it has finished (experiments/sweep_runs.py); its
  metrics row, or None when the run stopped early (SIGTERM: the same command resumes it)."""
  metrics_file = os.path.join("eval", tradeoff_report.METRICS_JSON)
  if not sweep_runs.train_unless_done(config, workdir, metrics_file):
    return None
  with open(os.path.join(workdir, metrics_file)) as f:
    return json.load(f)


def run_sweep(config, workdir):
  """Runs (or resumes) the whole grid, then writes the CSV and the figures; returns the rows,
  or None when a run was stopped by SIGTERM (nothing collected: rerun to resume)."""
  workdir = os.path.abspath(workdir)
  points = grid(config)
  rows = []
  for i, point in enumerate(points):
    name = run_name(*point)
    start = time.time()
    row = run_one(run_config(config, *point), os.path.join(workdir, RUNS_DIR, name))
    if row is None:
      logging.warning("Stopped during %s; run the same command again to resume.", name)
      return None
    rows.append(row)
    if jax.process_index() == 0:
      print(
        f"[{i + 1}/{len(points)}] {name}: accuracy {row['accuracy']:.4f}, MSE "
        f"{row['mse']:.4f}, CE {row['cross_entropy']:.4f} ({time.time() - start:.1f} s)",
        flush=True,
      )
  if jax.process_index() == 0:
    sweep_runs.write_csv(rows, COLUMNS, os.path.join(workdir, CSV_FILE))
    plot_tradeoff(rows, config, os.path.join(workdir, TRADEOFF_PNG))
    plot_reconstructions(rows, config, workdir, os.path.join(workdir, RECONSTRUCTIONS_PNG))
  return rows


def _curves(rows):
  """{(architecture, latent_dim): rows in lambda order}, in the sweep's order."""
  curves = {}
  for row in rows:
    curves.setdefault((row["architecture"], row["latent_dim"]), []).append(row)
  return {key: sorted(value, key=lambda r: r["lam"]) for key, value in curves.items()}


def plot_tradeoff(rows, config, path):
  curves = _curves(rows)
  lams = sorted({r["lam"] for r in rows})
  architectures = list(dict.fromkeys(r["architecture"] for r in rows))
  latents = sorted({r["latent_dim"] for r in rows})
  colours = {a: plt.get_cmap("tab10")(i) for i, a in enumerate(architectures)}
  styles = {z: s for z, s in zip(latents, ["--", "-", ":", "-.", (0, (5, 1)), (0, (1, 3))] * 4)}
  markers = {z: m for z, m in zip(latents, "os^Dv<>ph*" * 4)}
  fig, axes = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [1.5, 1, 1]})
  for (arch, latent), curve in curves.items():
    kw = dict(
      color=colours[arch],
      linestyle=styles[latent],
      marker=markers[latent],
      markersize=4,
      label=f"{arch}, latent {latent}",
    )
    mse = [r["mse"] for r in curve]
    accuracy = [r["accuracy"] for r in curve]
    axes[0].plot(mse, accuracy, **kw)
    for r in curve:
      axes[0].annotate(
        f"{r['lam']:g}",
        (r["mse"], r["accuracy"]),
        fontsize=6,
        color=colours[arch],
        xytext=(3, 2),
        textcoords="offset points",
      )
    positions = [lams.index(r["lam"]) for r in curve]
    axes[1].plot(positions, accuracy, **kw)
    axes[2].plot(positions, mse, **kw)
  axes[0].set_xscale("log")
  axes[0].set_xlabel("test reconstruction MSE (log scale)")
  axes[0].set_ylabel("test accuracy")
  axes[0].set_title("trade-off (points labelled by lambda)", fontsize=10)
  axes[0].legend(fontsize=7)
  for ax, label in ((axes[1], "test accuracy"), (axes[2], "test reconstruction MSE")):
    ax.set_xticks(range(len(lams)), [f"{lam:g}" for lam in lams])
    ax.set_xlabel("lambda (weight of the MSE for the encoder)")
    ax.set_ylabel(label)
    ax.set_title(f"{label} against lambda", fontsize=10)
  axes[2].set_yscale("log")
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.suptitle(
    f"Classification vs reconstruction, {config.data.name} "
    f"{config.data.image_size}x{config.data.image_size}: lambda * MSE + "
    f"(1 - lambda) * CE drives the encoder",
    fontsize=11,
  )
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_reconstructions(rows, config, workdir, path):
  """Rows: the test images, then their reconstructions at each lambda; column groups: one per
  (architecture, latent size)."""
  curves = _curves(rows)
  lams = sorted({r["lam"] for r in rows})
  count = config.sweep.figure_images
  width = len(curves) * (count + 1) - 1
  size = (0.42 * width + 0.6, 0.42 * (1 + len(lams)) + 0.7)
  fig, axes = plt.subplots(1 + len(lams), width, figsize=size, squeeze=False)
  for ax in axes.ravel():
    ax.set_axis_off()
  for g, ((arch, latent), curve) in enumerate(curves.items()):
    first = g * (count + 1)
    for r in curve:
      saved = np.load(
        os.path.join(
          workdir,
          RUNS_DIR,
          run_name(arch, latent, r["lam"]),
          "eval",
          tradeoff_report.RECONSTRUCTIONS_NPZ,
        )
      )
      row = 1 + lams.index(r["lam"])
      for i in range(min(count, len(saved["images"]))):
        axes[0, first + i].imshow(saved["images"][i], cmap="gray", vmin=-1, vmax=1)
        axes[row, first + i].imshow(saved["reconstructions"][i], cmap="gray", vmin=-1, vmax=1)
    axes[0, first + count // 2].set_title(f"{arch}\nlatent {latent}", fontsize=7)
  for row, label in enumerate(["test image"] + [f"lambda {lam:g}" for lam in lams]):
    axes[row, 0].text(
      -0.15, 0.5, label, transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=7
    )
  fig.suptitle(
    f"{config.data.name}: test images reconstructed at each lambda",
    fontsize=9,
    y=1 - 0.12 / size[1],
  )
  fig.subplots_adjust(
    left=0.6 / size[0] + 0.02,
    right=0.99,
    wspace=0.05,
    hspace=0.05,
    top=1 - 0.6 / size[1],
    bottom=0.01,
  )
  fig.savefig(path, dpi=130)
  plt.close(fig)


main = sweep_runs.command(run_sweep)


if __name__ == "__main__":
  app.run(main)
