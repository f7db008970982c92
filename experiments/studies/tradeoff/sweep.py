r"""Study C's sweep in one command: every (architecture, latent size, lambda, seed) of
config.sweep, and the (architecture, latent size) pairs of config.sweep.extra_points at every
lambda and seed.

  python -m experiments.studies.tradeoff.sweep \
      --config=experiments/studies/tradeoff/configs/digits.py --workdir=runs/tradeoff

Each grid point is an ordinary training run (train.train_and_evaluate) in its own directory,
WORKDIR/runs/<architecture>_z<latent>_lam<lambda>_seed<seed>/, with the config the sweep derived
for it (the `sweep` section removed, model.architecture, model.latent_dim, lam and seed set).
Seeds are the outer loop (config.sweep.seeds), so a stopped sweep already holds every
(architecture, latent size, lambda) at the first seeds. Running the command again resumes:
finished runs (eval/metrics.json present) are read back, a partial one continues from its
checkpoint, and a run directory holding a different config is refused. Then:

  WORKDIR/tradeoff.csv          one row per run: the columns of eval/metrics.json (report.py:
                                the selected state's test metrics, `select` and its step, the
                                last state's beside them, latent_size, dead_latent, the floors
                                mse_floor and accuracy_floor: the best a constant answer scores
                                on the test split) and below_floor (1: the run does not beat
                                both floors);
  WORKDIR/tradeoff_summary.csv  one row per (architecture, latent_dim, lam): latent_size,
                                accuracy_mean, accuracy_lo, accuracy_hi, mse_mean, mse_lo, mse_hi
                                (the mean over seeds; lo, hi: a 90% percentile-bootstrap band of
                                that mean, seeds resampled; zero width with one seed),
                                last_accuracy_mean, last_mse_mean, dead_latent_mean, the floors,
                                runs_below_floor and flagged (1: the mean or any seed's run does
                                not beat both floors: no trend may rest on it), seeds;
  WORKDIR/tradeoff.png          from the summary: accuracy against MSE, one curve per
                                architecture and latent size, points labelled by lambda, with
                                the bands as error bars, the floors as grey lines and flagged
                                points circled in red; and each against lambda, bands shaded;
                                "(extension)" marks a CNN latent the paper never ran (it keeps
                                cnn_small at 16 channels, cnn_large at 128);
  WORKDIR/reconstructions.png   a few test images reconstructed at every lambda, per
                                architecture and latent size (the runs of the first seed).

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
from experiments.bootstrap import seed_band
from experiments.studies.tradeoff import report as tradeoff_report
from experiments.studies.tradeoff.networks import ARCHITECTURES, PAPER_LATENT_DIMS
from experiments.studies.tradeoff.task import check_lam

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

RUNS_DIR = "runs"
CSV_FILE = "tradeoff.csv"
SUMMARY_CSV = "tradeoff_summary.csv"
TRADEOFF_PNG = "tradeoff.png"
RECONSTRUCTIONS_PNG = "reconstructions.png"
COLUMNS = (
  "architecture",
  "latent_dim",
  "latent_size",
  "lam",
  "seed",
  "select",
  "accuracy",
  "mse",
  "cross_entropy",
  "steps",
  "last_accuracy",
  "last_mse",
  "last_cross_entropy",
  "last_steps",
  "dead_latent",
  "last_dead_latent",
  "mse_floor",
  "accuracy_floor",
  "below_floor",
  "n_test",
)
SUMMARISED = ("accuracy", "mse")  # the metrics tradeoff_summary.csv gives a mean and band of
MEANS = ("last_accuracy", "last_mse", "dead_latent")  # ... a mean only (where the runs have them)
SUMMARY_COLUMNS = (
  "architecture",
  "latent_dim",
  "latent_size",
  "lam",
  *(f"{metric}_{stat}" for metric in SUMMARISED for stat in ("mean", "lo", "hi")),
  *(f"{metric}_mean" for metric in MEANS),
  "mse_floor",
  "accuracy_floor",
  "runs_below_floor",
  "flagged",
  "seeds",
)
BAND_LEVEL = 0.9


def grid(config):
  """[(architecture, latent_dim, lam, seed)] of config.sweep: seeds outermost, then
  architectures, latent sizes and lambdas in config order."""
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
  pairs = [(a, z) for a in architectures for z in latent_dims]
  for i, point in enumerate(sweep.get("extra_points", ())):
    field = f"config.sweep.extra_points entry {i}"
    if (
      not isinstance(point, (tuple, list))
      or len(point) != 2
      or point[0] not in ARCHITECTURES
      or not isinstance(point[1], int)
      or isinstance(point[1], bool)
      or point[1] < 1
    ):
      raise ValueError(
        f"{field} = {point!r}; expected (architecture from {ARCHITECTURES}, latent_dim >= 1)"
      )
    if tuple(point) in pairs:
      raise ValueError(f"{field} = {point!r} is already in the grid")
    pairs.append(tuple(point))
  return [(a, z, lam, seed) for seed in sweep_runs.seeds(config) for a, z in pairs for lam in lams]


def below_floor(row):
  """1 when a run does not beat both floors (`below_floors`), else 0."""
  return below_floors(row["mse"], row["accuracy"], row)


def below_floors(mse, accuracy, floors):
  """1 when the MSE is at or above floors["mse_floor"] (the mean image's) or the accuracy at or
  below floors["accuracy_floor"] (the majority class's), else 0."""
  return int(mse >= floors["mse_floor"] or accuracy <= floors["accuracy_floor"])


def is_extension(architecture, latent_dim):
  """A CNN latent the paper never ran (it never sweeps the CNNs' latent): this project's."""
  paper = PAPER_LATENT_DIMS.get(architecture)
  return architecture.startswith("cnn_") and latent_dim != paper


def run_name(architecture, latent_dim, lam, seed):
  return f"{architecture}_z{latent_dim}_lam{lam:g}_seed{seed}"


def run_config(config, architecture, latent_dim, lam, seed):
  """The config of one grid point: references resolved, `sweep` removed, the point set."""
  c = ml_collections.ConfigDict(config.to_dict())
  del c["sweep"]
  c.model.architecture, c.model.latent_dim, c.lam, c.seed = architecture, latent_dim, lam, seed
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
  """Runs (or resumes) the whole grid, then writes the CSVs and the figures; returns the rows
  (one per run, in grid order), or None when a run was stopped by SIGTERM (nothing collected:
  rerun to resume)."""
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
    row = {**row, "seed": point[3]}  # its metrics carry the test split's floors (report.py)
    row["below_floor"] = below_floor(row)
    rows.append(row)
    if jax.process_index() == 0:
      print(
        f"[{i + 1}/{len(points)}] {name}: accuracy {row['accuracy']:.4f}, MSE "
        f"{row['mse']:.4f}, CE {row['cross_entropy']:.4f} ({time.time() - start:.1f} s)",
        flush=True,
      )
  if jax.process_index() == 0:
    summary = summarise(rows)
    sweep_runs.write_csv(rows, COLUMNS, os.path.join(workdir, CSV_FILE))
    sweep_runs.write_csv(summary, SUMMARY_COLUMNS, os.path.join(workdir, SUMMARY_CSV))
    plot_tradeoff(summary, config, os.path.join(workdir, TRADEOFF_PNG))
    first_seed = [r for r in rows if r["seed"] == points[0][3]]
    plot_reconstructions(first_seed, config, workdir, os.path.join(workdir, RECONSTRUCTIONS_PNG))
  return rows


def summarise(rows, level=BAND_LEVEL):
  """Summary rows, one per (architecture, latent_dim, lam) in the order of first appearance:
  for accuracy and MSE the mean over the seeds' runs and a `level` percentile-bootstrap band of
  that mean (experiments/bootstrap.py, seed_band), and the number of seeds."""
  groups = {}
  for row in rows:
    groups.setdefault((row["architecture"], row["latent_dim"], row["lam"]), []).append(row)
  summary = []
  for (architecture, latent_dim, lam), runs in groups.items():
    out = {"architecture": architecture, "latent_dim": latent_dim, "lam": lam}
    out["latent_size"] = runs[0].get("latent_size", "")
    for metric in SUMMARISED:
      mean, lo, hi = seed_band([r[metric] for r in runs], level=level)
      out.update({f"{metric}_mean": mean, f"{metric}_lo": lo, f"{metric}_hi": hi})
    for metric in MEANS:
      if all(metric in r for r in runs):
        out[f"{metric}_mean"] = float(np.mean([r[metric] for r in runs]))
    if all("mse_floor" in r for r in runs):  # the same test split: the same floors
      out["mse_floor"], out["accuracy_floor"] = runs[0]["mse_floor"], runs[0]["accuracy_floor"]
      out["runs_below_floor"] = sum(below_floor(r) for r in runs)
      mean_below = below_floors(out["mse_mean"], out["accuracy_mean"], out)
      out["flagged"] = int(mean_below or out["runs_below_floor"] > 0)
    out["seeds"] = len(runs)
    summary.append(out)
  return summary


def _curves(rows):
  """{(architecture, latent_dim): rows in lambda order}, in the rows' order."""
  curves = {}
  for row in rows:
    curves.setdefault((row["architecture"], row["latent_dim"]), []).append(row)
  return {key: sorted(value, key=lambda r: r["lam"]) for key, value in curves.items()}


def _band(curve, metric):
  """(means, lo, hi) arrays of a curve of summary rows."""
  return tuple(np.array([r[f"{metric}_{stat}"] for r in curve]) for stat in ("mean", "lo", "hi"))


def plot_tradeoff(summary, config, path):
  """Accuracy against MSE and each against lambda, one curve per (architecture, latent size):
  the means over seeds, with their bootstrap bands (error bars; shaded against lambda)."""
  curves = _curves(summary)
  lams = sorted({r["lam"] for r in summary})
  architectures = list(dict.fromkeys(r["architecture"] for r in summary))
  latents = sorted({r["latent_dim"] for r in summary})
  seeds = max(r["seeds"] for r in summary)
  colours = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(architectures)}
  styles = {z: s for z, s in zip(latents, ["--", "-", ":", "-.", (0, (5, 1)), (0, (1, 3))] * 4)}
  markers = {z: m for z, m in zip(latents, "os^Dv<>ph*" * 4)}
  fig, axes = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [1.5, 1, 1]})
  for (arch, latent), curve in curves.items():
    kw = dict(
      color=colours[arch],
      linestyle=styles[latent],
      marker=markers[latent],
      markersize=4,
      label=f"{arch}, latent {latent}" + (" (extension)" * is_extension(arch, latent)),
    )
    mse, mse_lo, mse_hi = _band(curve, "mse")
    accuracy, accuracy_lo, accuracy_hi = _band(curve, "accuracy")
    axes[0].errorbar(
      mse,
      accuracy,
      xerr=np.maximum([mse - mse_lo, mse_hi - mse], 0.0),
      yerr=np.maximum([accuracy - accuracy_lo, accuracy_hi - accuracy], 0.0),
      elinewidth=0.7,
      capsize=1.5,
      **kw,
    )
    flagged = [r for r in curve if r.get("flagged")]
    if flagged:
      axes[0].scatter(
        [r["mse_mean"] for r in flagged],
        [r["accuracy_mean"] for r in flagged],
        s=90,
        facecolors="none",
        edgecolors="red",
        linewidths=0.8,
        zorder=3,
      )
    for r in curve:
      axes[0].annotate(
        f"{r['lam']:g}",
        (r["mse_mean"], r["accuracy_mean"]),
        fontsize=6,
        color=colours[arch],
        xytext=(3, 2),
        textcoords="offset points",
      )
    positions = [lams.index(r["lam"]) for r in curve]
    for ax, (mean, lo, hi) in (
      (axes[1], (accuracy, accuracy_lo, accuracy_hi)),
      (axes[2], (mse, mse_lo, mse_hi)),
    ):
      ax.plot(positions, mean, **kw)
      ax.fill_between(positions, lo, hi, color=colours[arch], alpha=0.15, linewidth=0)
  floors = [r for r in summary if "mse_floor" in r]
  if floors:
    floor_kw = dict(color="grey", linewidth=0.9, linestyle=(0, (2, 2)))
    mse_floor, accuracy_floor = floors[0]["mse_floor"], floors[0]["accuracy_floor"]
    axes[0].axvline(mse_floor, label=f"mean-image MSE {mse_floor:.3f}", **floor_kw)
    axes[0].axhline(accuracy_floor, label=f"majority accuracy {accuracy_floor:.3f}", **floor_kw)
    axes[1].axhline(accuracy_floor, **floor_kw)
    axes[2].axhline(mse_floor, **floor_kw)
    axes[0].scatter([], [], s=90, facecolors="none", edgecolors="red", label="below a floor")
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
    f"(1 - lambda) * CE drives the encoder (means over {seeds} seed{'s' * (seeds != 1)}, "
    f"{BAND_LEVEL:.0%} bootstrap bands)",
    fontsize=11,
  )
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_reconstructions(rows, config, workdir, path):
  """Rows (the runs of one seed): the test images, then their reconstructions at each lambda;
  column groups: one per (architecture, latent size)."""
  curves = _curves(rows)
  lams = sorted({r["lam"] for r in rows})
  seed = rows[0]["seed"]
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
          run_name(arch, latent, r["lam"], seed),
          "eval",
          tradeoff_report.RECONSTRUCTIONS_NPZ,
        )
      )
      row = 1 + lams.index(r["lam"])
      for i in range(min(count, len(saved["images"]))):
        tradeoff_report.show_image(axes[0, first + i], saved["images"][i])
        tradeoff_report.show_image(axes[row, first + i], saved["reconstructions"][i])
    axes[0, first + count // 2].set_title(f"{arch}\nlatent {latent}", fontsize=7)
  for row, label in enumerate(["test image"] + [f"lambda {lam:g}" for lam in lams]):
    axes[row, 0].text(
      -0.15, 0.5, label, transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=7
    )
  fig.suptitle(
    f"{config.data.name}: test images reconstructed at each lambda (seed {seed})",
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
