"""Studies as tasks for the shared training loop (experiments/train.py).

A task is built from (config, mesh) and provides:
  init_state(rng) -> pytree of arrays (parameters, optimiser state, step), replicated;
  train_step(state, batch) -> (state, metrics with at least "loss"), pure and jit-able;
  batch(step) -> the global batch of that step, a pure function of (config.seed, step);
  evaluate(state, workdir) -> writes workdir/eval/.
"""

import importlib

TASKS = {"reconstruction": "experiments.tasks.reconstruction", "icl": "experiments.tasks.icl",
         "tradeoff": "experiments.tasks.tradeoff"}


def make(config, mesh):
  if config.task not in TASKS:
    raise ValueError(f"config.task = {config.task!r}; expected one of {sorted(TASKS)}")
  return importlib.import_module(TASKS[config.task]).Task(config, mesh)
