"""One run of a sweep (studies A, B and C), trained unless it has finished.

A sweep gives each grid point its own workdir holding an ordinary training run. Running the
sweep's command again resumes: a finished run (its `done_file` present) is read back, a partial
one continues from its checkpoint, and a run directory holding a different config is refused, so
a changed sweep never mixes old and new results.
"""

import csv
import json
import os

from absl import app, flags, logging

from experiments import config_values, parallel, train
from experiments import main as single_run  # noqa: F401  (defines the shared flags)


def seeds(config):
  """config.sweep.seeds, checked: distinct integers >= 0."""
  values = config.sweep.seeds
  if (
    isinstance(values, str)
    or not isinstance(values, (tuple, list))
    or not values
    or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in values)
  ):
    raise ValueError(f"config.sweep.seeds = {values!r}; expected a tuple of integers >= 0")
  config_values.distinct(list(values), "config.sweep.seeds")
  return list(values)


def same_config(config, workdir):
  """Whether workdir/config.json holds exactly `config`."""
  with open(os.path.join(workdir, train.CONFIG_FILE)) as f:
    return json.load(f) == json.loads(config.to_json_best_effort())


def train_unless_done(config, workdir, done_file):
  """Trains and evaluates `config` in `workdir` unless workdir/done_file exists; True when it
  does afterwards, False when the run stopped early (SIGTERM saved a checkpoint: the same command
  resumes it)."""
  done_path = os.path.join(workdir, done_file)
  if os.path.exists(os.path.join(workdir, train.CONFIG_FILE)) and not same_config(config, workdir):
    raise ValueError(
      f"{workdir} holds a run with another config (its config.json differs): use "
      "a new --workdir for a changed sweep, or delete that run directory"
    )
  if not os.path.exists(done_path):
    train.train_and_evaluate(config, workdir)
  return os.path.exists(done_path)


def write_csv(rows, columns, path):
  """rows (dicts) as CSV with `columns` in that order (other keys ignored)."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def command(run_sweep):
  """An absl main for a sweep module: the flags of experiments.main (--config, --workdir,
  --distributed, ...), orbax kept quiet, then run_sweep(config, workdir)."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    parallel.initialize_distributed(
      flags.FLAGS.coordinator_address,
      flags.FLAGS.num_processes,
      flags.FLAGS.process_id,
      auto=flags.FLAGS.distributed,
    )
    run_sweep(flags.FLAGS.config, flags.FLAGS.workdir)

  return main
