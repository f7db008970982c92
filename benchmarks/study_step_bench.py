r"""Where a study's training time goes: each model's training step timed alone, at the batches
the study really draws (its lengths and buckets), then all models side by side.

  python -m benchmarks.study_step_bench \
      --config=experiments/studies/icl/configs/icl.py:variant=cpu
  python -m benchmarks.study_step_bench \
      --config=experiments/studies/length_generalisation/configs/digits.py --steps=20

For each model of config.models: the task is built with that model alone, its jitted step runs
on the batches of steps 0, 1, ... until every batch shape of the first --steps steps has
compiled (compile: the seconds of those first calls beyond the steady time), then the steps are
timed again (steady: mean over --steps steps, compiled). The projection, the training loop
without compiles, logging, checkpoints or evaluation: a model's steady time x its step budget
(config.num_train_steps, or its own where the study gives it one: study B's CPU transformer);
side by side, the joint step x the shortest budget plus each model's own step x its steps
beyond that (a model past its budget is skipped).
"""

import time

import jax
from absl import app, flags
from ml_collections import config_flags

from experiments import parallel, studies

_CONFIG = config_flags.DEFINE_config_file("config", None, "A study config file.", lock_config=False)
_STEPS = flags.DEFINE_integer("steps", 30, "Steps timed per model.")


def _time_steps(task, state, steps):
  """(compile seconds, steady seconds per step) of task.train_step over steps 0 .. steps - 1."""
  train_step = jax.jit(task.train_step)
  batches = [task.batch(step) for step in range(steps)]
  start = time.perf_counter()
  for batch in batches:  # first pass: compiles every shape
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for batch in batches:
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  steady = (time.perf_counter() - start) / steps
  return max(first - steady * steps, 0.0), steady


def main(argv):
  del argv
  config = _CONFIG.value
  mesh = parallel.make_mesh()
  rows, budgets = [], {}
  for models in [(name,) for name in config.models] + [tuple(config.models)]:
    single = config.copy_and_resolve_references()
    single.models = models
    task = studies.make_task(single, mesh)
    state = task.init_state(jax.random.key(0))
    compile_s, steady = _time_steps(task, state, _STEPS.value)
    if len(models) == 1:
      budgets[models[0]] = getattr(task, "num_train_steps", config.num_train_steps)
    rows.append(("+".join(models) if len(models) > 1 else models[0], compile_s, steady))
  total = rows[-1][2]
  shared = min(budgets.values())
  print(f"{'model':<50} {'compile s':>10} {'step ms':>9} {'share':>7} {'projected':>10}")
  for name, compile_s, steady in rows:
    if name in budgets:
      seconds = steady * budgets[name]
    else:
      seconds = steady * shared + sum(
        alone * (budgets[n] - shared) for n, _, alone in rows[:-1] if budgets[n] > shared
      )
    share = steady / total
    print(
      f"{name:<50} {compile_s:>10.1f} {steady * 1e3:>9.1f} {share:>7.0%} {seconds / 60:>8.1f} m"
    )
  steps = ", ".join(f"{n} {b}" for n, b in budgets.items())
  print(
    f"({_STEPS.value} steps each; projected over the step budgets: {steps}; "
    f"{jax.device_count()} {jax.default_backend()} device(s), JAX {jax.__version__})"
  )


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
