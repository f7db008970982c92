r"""Evaluates a trained workdir again: python -m experiments.evaluate --workdir=DIR.

Reads DIR/config.json and the latest checkpoint (or, with config.eval.select = "best", each
part's best one), and rewrites DIR/eval/ (the same evaluation
that ends every training run).
"""

import os

from absl import app, flags

from experiments import train

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.")
flags.mark_flag_as_required("workdir")


def evaluate(workdir):
  task, state = train.restore_run(workdir)
  task.evaluate(state, os.path.abspath(workdir))


def main(argv):
  del argv
  evaluate(_WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
