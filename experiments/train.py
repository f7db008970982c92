"""The training loop shared by every study: `train_and_evaluate(config, workdir)`.

A study provides a task (the contract in experiments/task.py): it builds the training state,
defines one training step, produces the batch of a given step and evaluates a trained state.
This loop owns what they share: the device mesh (data parallel over every device of every host),
jit, orbax checkpoints and exact resume, metrics, the non-finite-loss stop, clean exit on
SIGTERM, and model selection: with config.eval.select = "best" the task's optional
validation_scores are taken every config.eval.eval_every_steps and the best state of each part
is what gets evaluated (experiments/selection.py).
"""

import json
import os

import jax
import ml_collections
import numpy as np
from absl import logging

from experiments import checkpointing, metrics, parallel, preemption, selection, studies
from experiments.progress_log import ProgressLog

CONFIG_FILE = "config.json"


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; the run stopped without saving that state."""


def write_config(config, workdir):
  if jax.process_index() == 0:
    with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def read_config(workdir):
  with open(os.path.join(workdir, CONFIG_FILE)) as f:
    return ml_collections.ConfigDict(json.load(f))


def restore_or_init(task, config, workdir, mesh):
  """(state, checkpointer, first step): the latest complete checkpoint if there is one."""
  state = jax.device_put(
    task.init_state(jax.random.PRNGKey(config.seed)), parallel.replicated(mesh)
  )
  checkpointer = checkpointing.Checkpointer(
    os.path.join(workdir, "checkpoints"), config.checkpoint_every_steps, config.checkpoints_to_keep
  )
  start = checkpointer.latest_step()
  if start is None:
    return state, checkpointer, 0
  logging.info("Resuming from the checkpoint at step %d", start)
  return checkpointer.restore(state), checkpointer, start


def state_to_evaluate(task, config, workdir, state):
  """`state` itself ("last"), or the task's combination of each part's best state ("best")."""
  if selection.select_mode(config) != "best":
    return state
  best = selection.BestCheckpoints(os.path.join(workdir, selection.BEST_DIR))
  try:
    for part in best.parts():
      step, score = best.best(part)
      logging.info("Evaluating %s from step %d (validation score %.6g)", part, step, score)
    return task.combine_best(best.restore(state))
  finally:
    best.close()


def restore_run(workdir):
  """(task, state) of a trained workdir: its config.json's task and the state its evaluation
  reads (the latest checkpoint, or each part's best one)."""
  workdir = os.path.abspath(workdir)
  if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    raise FileNotFoundError(f"{workdir} has no {CONFIG_FILE}: not a training run's workdir")
  config = read_config(workdir)
  mesh = parallel.make_mesh()
  task = studies.make_task(config, mesh)
  state, checkpointer, step = restore_or_init(task, config, workdir, mesh)
  checkpointer.close()
  if step == 0:
    raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint to evaluate")
  return task, state_to_evaluate(task, config, workdir, state)


def train_and_evaluate(config, workdir):
  """Trains the task of `config.study` for config.num_train_steps (or the task's
  num_train_steps, when its models have their own budgets), then evaluates; returns the final
  state.

  Restarting with the same workdir resumes from the latest checkpoint and ends with the same
  parameters as an uninterrupted run. SIGTERM saves a checkpoint and returns early.
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.make_mesh()
  parallel.host_batch_size(config.batch_size, mesh)  # fails before any data is read
  task = studies.make_task(config, mesh)
  selection.check_task(task, config)
  select_best = selection.select_mode(config) == "best"
  write_config(config, workdir)
  state, checkpointer, start = restore_or_init(task, config, workdir, mesh)
  total = getattr(task, "num_train_steps", config.num_train_steps)  # a task's own budgets
  logged = getattr(task, "logged_metrics", lambda step, values: values)
  writer = metrics.MetricWriter(workdir, total, start)
  log = ProgressLog(total, start)  # lines where tqdm's bar is hidden
  train_step = jax.jit(
    task.train_step,
    donate_argnums=0,
    out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
  )
  log_every, save_every = config.log_every_steps, config.checkpoint_every_steps
  best = (
    selection.BestCheckpoints(os.path.join(workdir, selection.BEST_DIR)) if select_best else None
  )
  try:
    with preemption.StopRequest() as stop:
      for step in range(start, total):
        state, step_metrics = train_step(state, task.batch(step))
        done = step + 1
        is_save = done % save_every == 0 or done == total
        if done % log_every == 0 or is_save:
          values = jax.device_get(step_metrics)
          if not np.isfinite(values["loss"]):
            raise NonFiniteLossError(
              f"loss = {values['loss']} at step {done}: stopping. The last good checkpoint "
              f"(step {checkpointer.latest_step()}) in {workdir}/checkpoints is intact; lower "
              f"the learning rate or enable gradient clipping and restart from it."
            )
          writer.write(done, logged(done, values))
          writer.progress(done, loss=float(values["loss"]))
          log.update(done, float(values["loss"]))
        if best is not None and (done % config.eval.eval_every_steps == 0 or done == total):
          best.update(done, state, task.validation_scores(state))
        stopping = stop.requested() and done < total
        checkpointer.save(done, state, force=done == total or stopping)
        if stopping:
          logging.warning(
            "Stop requested (SIGTERM): saved step %d to %s and exiting.", done, workdir
          )
          return state
  finally:
    checkpointer.close()
    writer.close()
    if best is not None:
      best.close()
  task.evaluate(state_to_evaluate(task, config, workdir, state), workdir)
  return state
