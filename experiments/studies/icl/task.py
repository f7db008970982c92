"""Study B as a task: in-context regression of function classes (docs/design.md section 6B;
Grazzi et al. 2024).

Every model named in config.models trains side by side on the same prompts. A step's prompts are
generated on the devices, sharded like the batch, from (seed, global example index) alone. The
curriculum sets the step's active dimension and its largest number of points N; the step's
number of points n is N with probability config.icl.horizon_probability and otherwise uniform
in [ceil(config.icl.min_points_fraction * N), N - 1] (`draw_points`). So the horizon N keeps
that share of the loss weight it has in Garg et al.'s training (every prompt there has N
points), and the length-adaptive step still sees several lengths (with one length its alpha
would learn nothing about L). The prompts are built at a bucket >= n points
(one compilation per bucket) and only their first n points count: every model is causal, so the
padding after them changes nothing, and the length-adaptive model is told L = 2n. The loss is the
squared error averaged over every prefix of the prompt (the prediction at x_i sees the i - 1
pairs before it), as Garg et al.
"""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from experiments import host_batch, parallel
from experiments.side_by_side import SideBySide, model_names
from experiments.studies.icl import function_classes, report
from experiments.studies.icl.estimators import get_estimator
from experiments.studies.icl.model import VARIANTS, ICLRegressor, family
from experiments.training_lengths import bucket_for


def draw_points(seed, step, low, high, horizon_probability):
  """The number of points of global step `step`: high with probability horizon_probability,
  else uniform in [low, high - 1] (high when low == high); a pure function of (seed, step)."""
  rng = np.random.default_rng([int(seed), int(step)])
  if low >= high or rng.random() < horizon_probability:
    return int(high)
  return int(rng.integers(low, high))


def family_steps(config, name):
  """Model `name`'s step budget: config.model.<family>.num_train_steps where set (not 0), else
  config.num_train_steps (study B lets a family train longer: the CPU transformer, its count
  chosen on a validation seed)."""
  return config.model[family(name)].get("num_train_steps", 0) or config.num_train_steps


class Task(SideBySide):
  def __init__(self, config, mesh):
    self.mesh = mesh
    self.function_class = config.icl.function_class
    if function_classes.get_function_class(self.function_class).evaluation_only:
      trainable = sorted(
        n for n, fc in function_classes.FUNCTION_CLASSES.items() if not fc.evaluation_only
      )
      raise ValueError(
        f"config.icl.function_class = {self.function_class!r} is for evaluation "
        f"only (add it to config.eval.function_classes); train on one of "
        f"{trainable}"
      )
    self.d = config.icl.d
    self.curriculum = config.icl.curriculum
    if self.curriculum.dims.end > self.d:
      raise ValueError(
        f"config.icl.curriculum.dims.end = {self.curriculum.dims.end} exceeds "
        f"config.icl.d = {self.d}"
      )
    self.training_points = function_classes.horizon_points(config)
    fraction, probability = config.icl.min_points_fraction, config.icl.horizon_probability
    if not 0 < fraction <= 1:
      raise ValueError(f"config.icl.min_points_fraction = {fraction!r}; expected (0, 1]")
    if not 0 <= probability <= 1:
      raise ValueError(f"config.icl.horizon_probability = {probability!r}; expected [0, 1]")
    if not isinstance(config.icl.length_buckets, int) or config.icl.length_buckets < 1:
      raise ValueError(
        f"config.icl.length_buckets = {config.icl.length_buckets!r}; expected an int >= 1"
      )
    self._check_evaluation(config, mesh)
    names = model_names(config, VARIANTS)
    self._check_budgets(config, names)
    super().__init__(config, names)
    self.data_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    self.eval_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
    self.dropout_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)

  def _check_evaluation(self, config, mesh):
    """Every evaluation setting, checked before training rather than after it."""
    evaluation = config.eval
    if evaluation.n_points < self.training_points:
      raise ValueError(
        f"config.eval.n_points = {evaluation.n_points} is below the training "
        f"number of points, {self.training_points}"
      )
    if evaluation.probe_prompts and evaluation.probe_queries < self.d:
      raise ValueError(
        f"config.eval.probe_queries = {evaluation.probe_queries} is below d = "
        f"{self.d}: a linear probe needs at least d queries"
      )
    context = evaluation.probe_context
    if not isinstance(context, int) or not 0 <= context < evaluation.n_points:
      raise ValueError(
        f"config.eval.probe_context = {context!r}; expected an int in [0, "
        f"config.eval.n_points = {evaluation.n_points}) (0: the training horizon)"
      )
    report.check_probe_settings(evaluation, context or self.training_points - 1)
    transformer, tokens = config.model.transformer, 2 * evaluation.n_points
    if transformer.get("positional_embeddings") and transformer.max_length < tokens:
      raise ValueError(
        f"config.model.transformer.max_length = {transformer.max_length} is below the "
        f"{tokens} tokens of an evaluated prompt (config.eval.n_points = "
        f"{evaluation.n_points})"
      )
    parallel.host_batch_size(evaluation.batch_size, mesh)
    classes = evaluation.function_classes
    if isinstance(classes, str) or not classes:
      raise ValueError(
        f"config.eval.function_classes = {classes!r}; expected a non-empty tuple "
        f"of names from {sorted(function_classes.FUNCTION_CLASSES)}"
      )
    for name in classes:
      function_classes.get_function_class(name)
      for baseline in evaluation.baselines.get(name, ()):
        get_estimator(baseline)

  def _check_budgets(self, config, names):
    """Every family budget is positive and ends in the curriculum stage of the run's horizon
    (a model that stopped in an earlier stage would be scored past what it trained on)."""
    for name in names:
      steps = family_steps(config, name)
      if not isinstance(steps, int) or steps < 1:
        raise ValueError(
          f"config.model.{family(name)}.num_train_steps = {steps!r}; expected an int >= 1 "
          f"(0 = config.num_train_steps)"
        )
      stage = function_classes.curriculum_at(steps - 1, config.icl.curriculum)
      horizon = function_classes.curriculum_at(config.num_train_steps - 1, config.icl.curriculum)
      if stage != horizon:
        raise ValueError(
          f"{name} trains {steps} steps and ends in the curriculum stage (d, points) = "
          f"{stage}, the other models in {horizon}: set config.model.{family(name)}."
          f"num_train_steps so that every model ends in the last stage"
        )

  def train_steps(self, name):
    return family_steps(self.config, name)

  def build(self, name, rng):
    return ICLRegressor(name, self.config.model, self.d, rngs=nnx.Rngs(rng))

  def init_index(self, name):
    """Paired starts: the Mamba variants share the first one's key, so they start from the same
    parameters (alpha = 0 makes the length-adaptive model the fixed one at step 0) and differ
    only in how the step is formed; the other families keep their own."""
    if name.startswith("mamba"):
      return min(self.names.index(n) for n in self.names if n.startswith("mamba"))
    return self.names.index(name)

  def optimizer_config(self, name):
    """config.optimizer, with the model family's learning_rate if it sets one (S4D: 1e-3)."""
    optimizer = ml_collections.ConfigDict(self.config.optimizer.to_dict())
    rate = self.config.model[family(name)].learning_rate
    if rate:
      optimizer.learning_rate = rate
    return optimizer

  def loss(self, model, batch):
    """Squared error over the first n_points points of each prompt (the rest is padding)."""
    n_points = batch["n_points"][0]
    prompt = function_classes.make_prompt(batch["xs"], batch["ys"])
    outputs = model(prompt, n_points=n_points, dropout_key=batch.get("dropout_key"))
    predictions = function_classes.read_predictions(outputs)
    real = (jnp.arange(batch["ys"].shape[1]) < n_points).astype(jnp.float32)
    squared = jnp.square(predictions - batch["ys"]) * real
    return jnp.sum(squared) / (squared.shape[0] * n_points.astype(jnp.float32))

  def train_step(self, state, batch):
    # Dropout (S4D's) draws from (seed, step) alone; evaluation calls models without a key.
    batch = dict(batch, dropout_key=jax.random.fold_in(self.dropout_key, state["step"]))
    state, metrics = super().train_step(state, batch)
    d_active = batch["d_active"][0]
    scale = function_classes.error_scale(self.function_class, d_active)
    for name in self.names:
      metrics[f"error_{name}"] = metrics[f"loss_{name}"] / scale  # normalised, as evaluated
    metrics["d_active"] = d_active.astype(jnp.float32)
    metrics["n_points"] = batch["n_points"][0].astype(jnp.float32)
    return state, metrics

  def min_points(self, stage_points):
    """The fewest points a step of this stage draws: ceil(min_points_fraction * stage_points)."""
    return max(math.ceil(self.config.icl.min_points_fraction * stage_points), 1)

  def points_of_step(self, step):
    """(d_active, n_points, bucket) of `step`: n_points from `draw_points` within the curriculum
    stage, the prompts built at bucket >= n_points points."""
    d_active, stage_points = function_classes.curriculum_at(step, self.curriculum)
    icl = self.config.icl
    low = self.min_points(stage_points)
    n_points = draw_points(self.config.seed, step, low, stage_points, icl.horizon_probability)
    return d_active, n_points, bucket_for(n_points, self.buckets(stage_points))

  def buckets(self, stage_points):
    """config.icl.length_buckets bucket sizes for a stage: its points, halved and rounded up
    (n and the bucket differ by less than 2x, so padding costs under half the step)."""
    count, low = self.config.icl.length_buckets, self.min_points(stage_points)
    return sorted({max(-(-stage_points // 2**k), low) for k in range(count)})

  def prompts(self, key, class_name, n_points, first, global_batch, d_active=None):
    """Examples first .. first + global_batch - 1 of a stream, generated sharded on the devices:
    dict of xs (batch, n_points, d), ys (batch, n_points) and the drawn "function"."""
    local = (
      host_batch.host_examples(0, global_batch, jax.process_index(), jax.process_count()) + first
    )
    index = parallel.global_batch({"index": local.astype(np.uint32)}, self.mesh)["index"]
    return function_classes.icl_batch(
      key, class_name, n_points, example_index=index, d=self.d, d_active=d_active
    )

  def batch(self, step):
    d_active, n_points, bucket = self.points_of_step(step)
    batch_size = self.config.batch_size
    generated = self.prompts(
      self.data_key, self.function_class, bucket, step * batch_size, batch_size, d_active
    )
    local = parallel.host_batch_size(batch_size, self.mesh)
    per_example = parallel.global_batch(
      {
        "d_active": np.full((local,), d_active, np.int32),
        "n_points": np.full((local,), n_points, np.int32),
      },
      self.mesh,
    )
    return {"xs": generated["xs"], "ys": generated["ys"], **per_example}

  def evaluate(self, state, workdir):
    out_dir = os.path.join(workdir, "eval")
    report.write(self, state, out_dir)
    self.write_discretization(state, out_dir)
