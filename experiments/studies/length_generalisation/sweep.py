r"""Study A's training-range experiment in one command: every (training range, seed) of
config.sweep, each an ordinary run of the study's models side by side.

  python -m experiments.studies.length_generalisation.sweep \
      --config=experiments/studies/length_generalisation/configs/digits_sweep.py \
      --workdir=runs/length_sweep

The paper's claim is that Mamba adapts to the distribution of lengths it was trained on; that
needs the same models trained on several ranges and compared on one sweep of L. Each point runs
in WORKDIR/runs/train<min>-<max>_seed<seed>/ with the config the sweep derived for it (`sweep`
removed, the training range and seed set, and, with config.sweep.length_ref_mid, the
length-adaptive step's L_ref at the middle of the range). Within a run every model sees the same
batches, and the Mamba variants start from the same parameters (paired starts). Seeds are the
outer loop, so a stopped sweep already holds every range at the first seeds. Running the command
again resumes (experiments/sweep_runs.py). Then:

  WORKDIR/length_sweep.csv          model, train_min, train_max, seed, L, mse (mean_image: the
                                    training mean image read at the same queries)
  WORKDIR/length_sweep_summary.csv  model, train_min, train_max, L, mse_mean, lo, hi, seeds (lo,
                                    hi: a 90% percentile-bootstrap band of the mean over seeds)
  WORKDIR/length_sweep.png          one panel per model, one curve per training range with its
                                    band, each training range shaded
  WORKDIR/stages.csv                model, train_min, train_max, seed, L, k, mse
  WORKDIR/stages_across_ranges.csv  the stage analysis side by side across training ranges,
  and stages_across_ranges_<model>.png (cross_range.py)
  WORKDIR/discretization.csv        train_min, train_max, seed, model, layer, alpha_mean, ...

The flags are those of experiments.main (--config, --workdir, --distributed, ...).
"""

import csv
import os
import time

import jax
import matplotlib
import ml_collections
import numpy as np
from absl import app, logging

from experiments import config_values, learned_alpha, sweep_runs
from experiments.bootstrap import seed_band
from experiments.studies.length_generalisation import cross_range, report

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

RUNS_DIR = "runs"
SWEEP_CSV = "length_sweep.csv"
SUMMARY_CSV = "length_sweep_summary.csv"
SWEEP_PNG = "length_sweep.png"
SWEEP_COLUMNS = ("model", "train_min", "train_max", "seed", "L", "mse")
SUMMARY_COLUMNS = ("model", "train_min", "train_max", "L", "mse_mean", "lo", "hi", "seeds")
BAND_LEVEL = 0.9


def grid(config):
  """[(train_min, train_max, seed)], seeds outermost, ranges in config order."""
  if config.study != "length_generalisation":
    raise ValueError(
      f"config.study = {config.study!r}; this sweep runs study A ('length_generalisation')"
    )
  ranges = config.sweep.train_ranges
  if isinstance(ranges, str) or not isinstance(ranges, (tuple, list)) or not ranges:
    raise ValueError(
      f"config.sweep.train_ranges = {ranges!r}; expected a tuple of (min, max) pairs, "
      "e.g. --config.sweep.train_ranges='((4,8),(4,16))'"
    )
  checked = []
  for i, pair in enumerate(ranges):
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
      raise ValueError(f"config.sweep.train_ranges entry {i} = {pair!r}; expected (min, max)")
    checked.append(config_values.length_range(*pair, f"config.sweep.train_ranges entry {i}"))
  config_values.distinct(checked, "config.sweep.train_ranges")
  return [(lo, hi, seed) for seed in sweep_runs.seeds(config) for lo, hi in checked]


def run_name(train_min, train_max, seed):
  return f"train{train_min}-{train_max}_seed{seed}"


def run_config(config, train_min, train_max, seed):
  """The config of one grid point: references resolved, `sweep` removed, the point set."""
  c = ml_collections.ConfigDict(config.to_dict())
  length_ref_mid = c.sweep.length_ref_mid
  del c["sweep"]
  c.sequence.train_length_min, c.sequence.train_length_max, c.seed = train_min, train_max, seed
  if length_ref_mid:
    c.model.mamba.length_ref = (train_min + train_max) / 2
  return c


def _read_csv(path, **extra):
  with open(path, newline="") as f:
    return [dict(row, **extra) for row in csv.DictReader(f)]


def collect(workdir, points):
  """(sweep rows, stage rows, alpha rows) of the finished runs of `points`, typed."""
  sweep, stages, alphas = [], [], []
  for lo, hi, seed in points:
    eval_dir = os.path.join(workdir, RUNS_DIR, run_name(lo, hi, seed), "eval")
    point = {"train_min": lo, "train_max": hi, "seed": seed}
    for row in _read_csv(os.path.join(eval_dir, report.SWEEP_CSV), **point):
      sweep.append(dict(row, L=int(row["L"]), mse=float(row["mse"])))
    for row in _read_csv(os.path.join(eval_dir, report.STAGES_CSV)):
      stages.append(dict(row, L=int(row["L"]), k=int(row["k"]), mse=float(row["mse"])))
    alpha_path = os.path.join(eval_dir, learned_alpha.CSV_FILE)
    if os.path.exists(alpha_path):
      alphas += _read_csv(alpha_path, **point)
  return sweep, stages, alphas


def summarise(rows, level=BAND_LEVEL):
  """Summary rows: per (model, range, L), the mean MSE over seeds and a `level` percentile
  bootstrap band of that mean (seeds resampled; a single seed gives a zero-width band)."""
  groups = {}
  for row in rows:
    key = (row["model"], row["train_min"], row["train_max"], row["L"])
    groups.setdefault(key, []).append(row["mse"])
  summary = []
  for (model, lo, hi, length), values in groups.items():
    mean, band_lo, band_hi = seed_band(values, level=level)
    summary.append(
      {
        "model": model,
        "train_min": lo,
        "train_max": hi,
        "L": length,
        "mse_mean": mean,
        "lo": band_lo,
        "hi": band_hi,
        "seeds": len(values),
      }
    )
  return summary


def plot(summary, path):
  """One panel per model; per training range its mean curve, band and shaded range; the mean
  image (averaged over ranges) dashed in every panel."""
  models = [m for m in dict.fromkeys(r["model"] for r in summary) if m != report.MEAN_IMAGE]
  ranges = list(dict.fromkeys((r["train_min"], r["train_max"]) for r in summary))
  floor = {}
  for r in summary:
    if r["model"] == report.MEAN_IMAGE:
      floor.setdefault(r["L"], []).append(r["mse_mean"])
  fig, axes = plt.subplots(
    1, len(models), figsize=(4 * len(models), 3.6), squeeze=False, sharey=True
  )
  for ax, model in zip(axes[0], models):
    for i, (lo, hi) in enumerate(ranges):
      colour = plt.get_cmap("tab10")(i)
      curve = sorted(
        (
          r for r in summary if r["model"] == model and (r["train_min"], r["train_max"]) == (lo, hi)
        ),
        key=lambda r: r["L"],
      )
      lengths = [r["L"] for r in curve]
      seeds = curve[0]["seeds"] if curve else 0
      ax.plot(
        lengths,
        [r["mse_mean"] for r in curve],
        color=colour,
        marker="o",
        markersize=3,
        label=f"trained on {lo}..{hi} ({seeds} seeds)",
      )
      ax.fill_between(
        lengths, [r["lo"] for r in curve], [r["hi"] for r in curve], color=colour, alpha=0.2
      )
      ax.axvspan(lo, hi, color=colour, alpha=0.08)
    if floor:
      lengths = sorted(floor)
      ax.plot(lengths, [np.mean(floor[n]) for n in lengths], "k--", lw=1, label="mean image")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("context patches L")
    ax.set_title(model, fontsize=10)
    ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel("reconstruction MSE at the queries")
  axes[0, 0].legend(fontsize=7)
  fig.suptitle(f"Training range against length generalisation ({BAND_LEVEL:.0%} bands over seeds)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run_sweep(config, workdir):
  """Runs (or resumes) every point, then writes the CSVs and the figure; returns the summary
  rows, or None when a run was stopped by SIGTERM (rerun to resume)."""
  workdir = os.path.abspath(workdir)
  points = grid(config)
  done_file = os.path.join("eval", report.STAGES_CSV)
  for i, point in enumerate(points):
    name = run_name(*point)
    start = time.time()
    run_dir = os.path.join(workdir, RUNS_DIR, name)
    if not sweep_runs.train_unless_done(run_config(config, *point), run_dir, done_file):
      logging.warning("Stopped during %s; run the same command again to resume.", name)
      return None
    if jax.process_index() == 0:
      print(f"[{i + 1}/{len(points)}] {name} ({time.time() - start:.1f} s)", flush=True)
  sweep, stages, alphas = collect(workdir, points)
  summary = summarise(sweep)
  if jax.process_index() == 0:
    sweep_runs.write_csv(sweep, SWEEP_COLUMNS, os.path.join(workdir, SWEEP_CSV))
    sweep_runs.write_csv(summary, SUMMARY_COLUMNS, os.path.join(workdir, SUMMARY_CSV))
    sweep_runs.write_csv(stages, report.STAGES_COLUMNS, os.path.join(workdir, report.STAGES_CSV))
    if alphas:
      columns = ("train_min", "train_max", "seed") + learned_alpha.CSV_FIELDS
      sweep_runs.write_csv(alphas, columns, os.path.join(workdir, learned_alpha.CSV_FILE))
    plot(summary, os.path.join(workdir, SWEEP_PNG))
    ranges = list(dict.fromkeys((lo, hi) for lo, hi, _ in points))
    across = cross_range.summarise(stages, ranges, BAND_LEVEL)
    sweep_runs.write_csv(across, cross_range.COLUMNS, os.path.join(workdir, cross_range.CSV))
    first = sweep_runs.seeds(config)[0]
    runs = {r: os.path.join(workdir, RUNS_DIR, run_name(*r, first)) for r in ranges}
    cross_range.plot(across, runs, workdir)
  return summary


main = sweep_runs.command(run_sweep)


if __name__ == "__main__":
  app.run(main)
