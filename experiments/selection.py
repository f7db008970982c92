"""Model selection by validation score: per part of the state, the checkpoint scored best.

With config.eval.select = "best" the loop (experiments/train.py) asks the task for its
validation scores every config.eval.eval_every_steps and at the last step; each part (study A:
each model trained side by side) keeps its own best state in workdir/checkpoints_best/<part>/,
an orbax manager holding one checkpoint and its score. The score lives beside the checkpoint,
so a resumed run keeps the best step and score of the run before it.
"""

import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

BEST_DIR = "checkpoints_best"
SELECT_MODES = ("last", "best")


def select_mode(config):
  """config.eval.select ("last" when absent): which state the final evaluation reads."""
  evaluation = config.get("eval", ml_collections.ConfigDict())
  mode = evaluation.get("select", "last")
  if mode not in SELECT_MODES:
    raise ValueError(f"config.eval.select = {mode!r}: must be one of {SELECT_MODES}")
  return mode


def check_task(task, config):
  """Fails at start when best selection is asked of a task that cannot score or combine."""
  if select_mode(config) != "best":
    return
  missing = [m for m in ("validation_scores", "combine_best") if not hasattr(task, m)]
  if missing:
    raise ValueError(
      f"config.eval.select = 'best' needs the task to define {' and '.join(missing)} "
      "(experiments/task.py); use 'last'."
    )
  every = config.eval.get("eval_every_steps", 0)
  if not isinstance(every, int) or every < 1:
    raise ValueError(f"config.eval.eval_every_steps = {every!r}: must be a positive int")


class BestCheckpoints:
  """One orbax manager per part (directory/<part>/), keeping only its lowest-scored checkpoint.

  Parts are the keys of the task's validation scores; those already on disk are found again.
  """

  def __init__(self, directory):
    self.directory = os.path.abspath(directory)
    self._managers, self._best = {}, {}
    if os.path.isdir(self.directory):
      for part in sorted(os.listdir(self.directory)):
        if os.path.isdir(os.path.join(self.directory, part)):
          self._manager(part)

  def _manager(self, part):
    if part not in self._managers:
      options = ocp.CheckpointManagerOptions(
        max_to_keep=1, best_fn=lambda metrics: metrics["score"], best_mode="min", create=True
      )
      self._managers[part] = ocp.CheckpointManager(
        os.path.join(self.directory, part), options=options
      )
    return self._managers[part]

  def parts(self):
    return list(self._managers)

  def best(self, part):
    """(step, score) of the part's kept checkpoint, or None before its first (read from disk
    once, then kept in memory: a save in flight has no metrics on disk yet)."""
    if part not in self._best:
      manager = self._manager(part)
      manager.wait_until_finished()
      step = manager.best_step()
      self._best[part] = None if step is None else (step, float(manager.metrics(step)["score"]))
    return self._best[part]

  def update(self, step, state, scores):
    """Saves `state` for each part whose score beats its best so far; returns those parts.

    A step at or before the kept one is not saved again: after a resume the loop replays steps
    the interrupted run already scored (the same states, as the data order is a pure function
    of the step), and a non-finite score never counts.
    """
    improved = []
    for part, score in scores.items():
      score = float(score)
      best = self.best(part)
      if not np.isfinite(score) or (best is not None and (step <= best[0] or score >= best[1])):
        continue
      self._manager(part).save(
        step, args=ocp.args.StandardSave(state), metrics={"score": score}, force=True
      )
      self._best[part] = (step, score)
      logging.info("Best %s so far: validation score %.6g at step %d", part, score, step)
      improved.append(part)
    return improved

  def restore(self, target):
    """{part: the part's best state}, restored into the structure and shardings of target."""
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    if not self._managers:
      raise FileNotFoundError(f"{self.directory} holds no best checkpoint to evaluate")
    states = {}
    for part, manager in self._managers.items():
      manager.wait_until_finished()
      step = manager.best_step()
      if step is None:
        raise FileNotFoundError(f"no best checkpoint of {part} in {manager.directory}")
      states[part] = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return states

  def close(self):
    for manager in self._managers.values():
      manager.wait_until_finished()
      manager.close()
