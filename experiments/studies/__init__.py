"""The three studies, one package each; `make_task` builds the one a config names.

Each study package holds its task (experiments/task.py's contract), models, report, configs and,
where it has one, its sweep. Studies share only what lives in `experiments/` itself and never
import one another (tests/experiments/test_layering.py checks this).
"""

import importlib

STUDIES = {
  "length_generalisation": "experiments.studies.length_generalisation.task",
  "icl": "experiments.studies.icl.task",
  "tradeoff": "experiments.studies.tradeoff.task",
}


def make_task(config, mesh):
  """The task of `config.study`, built (and its config checked) for `mesh`."""
  if "study" not in config:
    raise ValueError(
      "config.study is missing: this config (or a workdir's config.json) predates the per-study "
      f"packages (it names config.task = {config.get('task')!r}); the studies are now "
      f"{sorted(STUDIES)}, with their configs under experiments/studies/<study>/configs/"
    )
  if config.study not in STUDIES:
    raise ValueError(f"config.study = {config.study!r}; expected one of {sorted(STUDIES)}")
  return importlib.import_module(STUDIES[config.study]).Task(config, mesh)
