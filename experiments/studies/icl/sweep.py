r"""Study B over seeds in one command: one ordinary run of the study's models per seed of
config.sweep.seeds (the paper: 3), then curves with bands over prompts and seeds.

  python -m experiments.studies.icl.sweep \
      --config=experiments/studies/icl/configs/icl.py:variant=cpu --workdir=runs/icl_cpu_seeds

Each seed trains every model and draws its own initialisations, training prompts and evaluation
prompts (all follow from config.seed) in WORKDIR/runs/seed<k>/. Running the command again
resumes (experiments/sweep_runs.py). Then, in WORKDIR:

  icl_curves.csv        task, model, n_points, error, lo, hi, prompts, seeds: the mean over seeds
                        of each seed's mean curve; lo, hi: a percentile bootstrap band over seeds
                        and prompts (experiments/bootstrap.py, nested_bootstrap_band)
  icl_<task>.png        those curves and bands
  icl_summary.csv, .md  the error at the training horizon and at the longest length
  probing.csv           every seed's probing rows, with a seed column
  probing.png           those rows averaged over seeds
  discretization.csv    every seed's learned alpha per layer, with a seed column

The flags are those of experiments.main (--config, --workdir, --distributed, ...).
"""

import csv
import os
import time

import jax
import ml_collections
import numpy as np
from absl import app, logging

from experiments import learned_alpha, sweep_runs
from experiments.bootstrap import nested_bootstrap_band
from experiments.studies.icl import function_classes, report

RUNS_DIR = "runs"


def grid(config):
  """The seeds of config.sweep, checked."""
  if config.study != "icl":
    raise ValueError(f"config.study = {config.study!r}; this sweep runs study B ('icl')")
  return sweep_runs.seeds(config)


def run_name(seed):
  return f"seed{seed}"


def run_config(config, seed):
  """The config of one seed: `sweep` removed, the seed set."""
  c = ml_collections.ConfigDict(config.to_dict())
  del c["sweep"]
  c.seed = seed
  return c


def _read_csv(path, **extra):
  with open(path, newline="") as f:
    return [dict(row, **extra) for row in csv.DictReader(f)]


def curves(errors_by_seed, config):
  """icl_curves.csv rows from {seed: {"<task>/<model>": (prompts, n_points) errors}}."""
  rows = []
  for key in errors_by_seed[min(errors_by_seed)]:
    task, model = key.split("/", 1)
    arrays = [errors[key] for errors in errors_by_seed.values()]
    band = nested_bootstrap_band(
      arrays, level=config.eval.band_level, resamples=config.eval.bootstrap_resamples
    )
    prompts = int(np.mean([a.shape[0] for a in arrays]))
    rows += report.band_rows(task, model, band, prompts=prompts, seeds=len(arrays))
  return rows


def parameters(workdir, seed):
  """{trained model: parameter count} from one seed's icl_summary.csv (the same for every
  seed: the sizes come from the config)."""
  path = os.path.join(workdir, RUNS_DIR, run_name(seed), "eval", report.SUMMARY_CSV)
  return {r["model"]: int(r["parameters"]) for r in _read_csv(path) if r["parameters"]}


def collect(workdir, seeds):
  """({seed: per-prompt errors}, probing rows, alpha rows) of the finished runs."""
  errors, probing, alphas = {}, [], []
  for seed in seeds:
    eval_dir = os.path.join(workdir, RUNS_DIR, run_name(seed), "eval")
    with np.load(os.path.join(eval_dir, report.ERRORS_NPZ)) as data:
      errors[seed] = {key: data[key] for key in data.files}
    probing_path = os.path.join(eval_dir, report.PROBING_CSV)
    if os.path.exists(probing_path):
      probing += _read_csv(probing_path, seed=seed)
    alpha_path = os.path.join(eval_dir, learned_alpha.CSV_FILE)
    if os.path.exists(alpha_path):
      alphas += _read_csv(alpha_path, seed=seed)
  return errors, probing, alphas


def mean_over_seeds(probing):
  """Probing rows averaged over seeds: one row per (task, model, layer, probe)."""
  groups = {}
  for row in probing:
    key = (row["task"], row["model"], int(row["layer"]), row["probe"])
    groups.setdefault(key, []).append(row)
  return [
    {
      "task": task,
      "model": model,
      "layer": layer,
      "depth": float(rows[0]["depth"]),
      "n_points": rows[0]["n_points"],
      "probe": probe,
      "error": float(np.mean([float(r["error"]) for r in rows])),
      "seeds": len(rows),
    }
    for (task, model, layer, probe), rows in groups.items()
  ]


def run_sweep(config, workdir):
  """Runs (or resumes) every seed, then writes the outputs; returns the curve rows, or None when
  a run was stopped by SIGTERM (rerun to resume)."""
  workdir = os.path.abspath(workdir)
  seeds = grid(config)
  done_file = os.path.join("eval", learned_alpha.CSV_FILE)  # the task's last output
  for i, seed in enumerate(seeds):
    start = time.time()
    run_dir = os.path.join(workdir, RUNS_DIR, run_name(seed))
    if not sweep_runs.train_unless_done(run_config(config, seed), run_dir, done_file):
      logging.warning("Stopped during seed %d; run the same command again to resume.", seed)
      return None
    if jax.process_index() == 0:
      print(f"[{i + 1}/{len(seeds)}] seed {seed} ({time.time() - start:.1f} s)", flush=True)
  errors, probing, alphas = collect(workdir, seeds)
  rows = curves(errors, config)
  if jax.process_index() == 0:
    report.write_csv(os.path.join(workdir, report.CURVES_CSV), rows)
    horizon = function_classes.horizon_points(config)
    models = list(config.models)
    for task in dict.fromkeys(r["task"] for r in rows):
      report.plot_curves(rows, task, horizon, models, os.path.join(workdir, f"icl_{task}.png"))
    summary = report.summary_rows(rows, horizon, parameters(workdir, seeds[0]))
    report.write_csv(os.path.join(workdir, report.SUMMARY_CSV), summary)
    with open(os.path.join(workdir, report.SUMMARY_MD), "w") as f:
      f.write(report.summary_markdown(summary))
    if probing:
      report.write_csv(os.path.join(workdir, report.PROBING_CSV), probing)
      report.plot_probing(mean_over_seeds(probing), os.path.join(workdir, report.PROBING_PNG))
    if alphas:
      columns = ("seed",) + learned_alpha.CSV_FIELDS
      sweep_runs.write_csv(alphas, columns, os.path.join(workdir, learned_alpha.CSV_FILE))
  return rows


main = sweep_runs.command(run_sweep)


if __name__ == "__main__":
  app.run(main)
