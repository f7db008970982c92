"""The contract between a study and the training loop (experiments/train.py).

A study's task is built from (config, mesh) and is complete after construction: every config
check has run and every method can be called in any order (nothing is filled in lazily by
another call). The loop only ever calls these four methods, and the two optional ones below
when config.eval.select = "best" (experiments/selection.py):

  validation_scores(state) -> dict[str, float]
    Lower is better; one score per part of the state that is selected on its own (study A: per
    model trained side by side). Called every config.eval.eval_every_steps and at the last step,
    on every process; must be deterministic given the state.
  combine_best(states: dict[str, State]) -> State
    The state to evaluate, from each part's best state (keys as validation_scores').

A task may also set `num_train_steps` (an int), the run's length when it differs from
config.num_train_steps (experiments/side_by_side.py: models with their own step budgets), and
define `logged_metrics(step, metrics) -> metrics`, the part of a step's metrics (host values)
the loop logs at `step` (all of them when a task does not define it; side_by_side.py leaves out
the loss of a model past its budget).
"""

from typing import Any, Protocol, runtime_checkable

import jax

State = Any  # a pytree of arrays: {"params", "opt_state", "step"} in every study so far
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@runtime_checkable
class Task(Protocol):
  def init_state(self, rng: jax.Array) -> State:
    """The initial training state (parameters, optimiser state, step) from one PRNG key."""

  def train_step(self, state: State, batch: Batch) -> tuple[State, Metrics]:
    """One optimiser step: pure and jit-able; metrics hold at least "loss"."""

  def batch(self, step: int) -> Batch:
    """The global batch of `step`, a pure function of (config.seed, step), sharded on the mesh."""

  def evaluate(self, state: State, workdir: str) -> None:
    """Writes the study's evaluation outputs to workdir/eval/."""
