r"""Evaluates a trained workdir again: python -m experiments.evaluate --workdir=DIR.

Reads DIR/config.json and the latest checkpoint (or, with config.eval.select = "best", each
part's best one), and rewrites DIR/eval/ (the same evaluation
that ends every training run).
"""

import os

from absl import app, flags

from experiments import parallel, studies, train

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.")
flags.mark_flag_as_required("workdir")


def evaluate(workdir):
  workdir = os.path.abspath(workdir)
  if not os.path.exists(os.path.join(workdir, train.CONFIG_FILE)):
    raise FileNotFoundError(f"{workdir} has no {train.CONFIG_FILE}: not a training run's workdir")
  config = train.read_config(workdir)
  mesh = parallel.make_mesh()
  task = studies.make_task(config, mesh)
  state, checkpointer, step = train.restore_or_init(task, config, workdir, mesh)
  checkpointer.close()
  if step == 0:
    raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint to evaluate")
  task.evaluate(train.state_to_evaluate(task, config, workdir, state), workdir)


def main(argv):
  del argv
  evaluate(_WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
