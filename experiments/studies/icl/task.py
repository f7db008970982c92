"""Study B as a task: in-context regression of function classes (DESIGN.md 6B; Grazzi et al.).

Every model named in config.models trains side by side on the same prompts. A step's prompts are
generated on the devices, sharded like the batch, from (seed, global example index) alone; the
curriculum sets the step's active dimension and number of points (one compilation per number of
points). The loss is the squared error averaged over every prefix of the prompt (the prediction
at x_i sees the i - 1 pairs before it), as Garg et al.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from experiments import data, parallel
from experiments.data import icl_tasks
from experiments.models.icl_regressor import VARIANTS, ICLRegressor, family
from experiments.tasks import icl_report
from experiments.tasks.side_by_side import SideBySide, model_names


class Task(SideBySide):

  def __init__(self, config, mesh):
    super().__init__(config, model_names(config, VARIANTS))
    self.mesh = mesh
    self.task_name = config.icl.task
    if icl_tasks.get_task(self.task_name).evaluation_only:
      raise ValueError(f"config.icl.task = {self.task_name!r} is for evaluation only (add it to "
                       f"config.eval.tasks); train on one of "
                       f"{sorted(n for n, t in icl_tasks.TASKS.items() if not t.evaluation_only)}")
    self.d = config.icl.d
    self.curriculum = config.icl.curriculum
    last_step = max(config.num_train_steps - 1, 0)
    self.training_points = icl_tasks.curriculum_at(last_step, self.curriculum)[1]
    if self.curriculum.dims.end > self.d:
      raise ValueError(f"config.icl.curriculum.dims.end = {self.curriculum.dims.end} exceeds "
                       f"config.icl.d = {self.d}")
    self.data_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    self.eval_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)

  def build(self, name, rng):
    return ICLRegressor(name, self.config.model, self.d, rngs=nnx.Rngs(rng))

  def optimizer_config(self, name):
    """config.optimizer, with the model family's learning_rate if it sets one (S4D: 1e-3)."""
    optimizer = ml_collections.ConfigDict(self.config.optimizer.to_dict())
    rate = self.config.model[family(name)].get("learning_rate", 0.0)
    if rate:
      optimizer.learning_rate = rate
    return optimizer

  def loss(self, model, batch):
    predictions = data.read_predictions(model(data.make_prompt(batch["xs"], batch["ys"])))
    return jnp.mean(jnp.square(predictions - batch["ys"]))

  def train_step(self, state, batch):
    state, metrics = super().train_step(state, batch)
    d_active = batch["d_active"][0]
    scale = icl_tasks.error_scale(self.task_name, d_active)
    for name in self.names:
      metrics[f"error_{name}"] = metrics[f"loss_{name}"] / scale  # normalised, as evaluated
    metrics["d_active"] = d_active.astype(jnp.float32)
    metrics["n_points"] = jnp.asarray(batch["ys"].shape[1], jnp.float32)
    return state, metrics

  def prompts(self, key, task_name, n_points, first, global_batch, d_active=None):
    """Examples first .. first + global_batch - 1 of a stream, generated sharded on the devices:
    dict of xs (batch, n_points, d), ys (batch, n_points) and the drawn "function"."""
    local = icl_tasks.example_indices(0, global_batch, jax.process_index(),
                                           jax.process_count()) + first
    index = parallel.global_batch({"index": local.astype(np.uint32)}, self.mesh)["index"]
    return data.icl_batch(key, task_name, n_points, example_index=index, d=self.d,
                          d_active=d_active)

  def batch(self, step):
    d_active, n_points = icl_tasks.curriculum_at(step, self.curriculum)
    batch_size = self.config.batch_size
    generated = self.prompts(self.data_key, self.task_name, n_points, step * batch_size,
                             batch_size, d_active)
    local = parallel.check_global_batch(batch_size, self.mesh)
    d_active_array = parallel.global_batch(
        {"d_active": np.full((local,), d_active, np.int32)}, self.mesh)["d_active"]
    return {"xs": generated["xs"], "ys": generated["ys"], "d_active": d_active_array}

  def evaluate(self, state, workdir):
    icl_report.write(self, state, os.path.join(workdir, "eval"))
