"""Study A as a task: reconstruct images from L random patches; how does it generalise over L?

Every model named in config.models trains side by side on the same batches (one optimiser
each), so the length sweep compares them on equal terms. L is drawn per batch; the context is
built at a bucket length >= L and the model left-pads the rest, so one compiled step serves a
whole bucket (docs/design.md section 6A; mamba_jax's exact left padding).

config.data.random_affine applies the paper's RandomAffine (experiments/data/augment.py) as its
code does, to training and to validation images: each training example gets a fresh draw keyed
by its global stream position, each evaluation image one fixed draw keyed by its index (the same
for every model and L), and the mean-image floor averages the transformed training images.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from experiments import config_values, data, parallel
from experiments.data import augment
from experiments.side_by_side import SideBySide, model_names
from experiments.studies.length_generalisation import patches, report
from experiments.studies.length_generalisation.model import (
  VARIANTS,
  PatchReconstructor,
  squared_error,
)
from experiments.training_lengths import bucket_for, draw_length, length_buckets


class SourceTail:
  """The last n items of a random-access source (fewer if it is shorter), indexed from 0."""

  def __init__(self, source, n):
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
      raise ValueError(f"config.eval.select_examples = {n!r}: expected a positive int")
    self.source = source
    self.start = max(0, len(source) - n)

  def __len__(self):
    return len(self.source) - self.start

  def __getitem__(self, index):
    return self.source[self.start + index]


class Task(SideBySide):
  def __init__(self, config, mesh):
    self.mesh = mesh
    seq = config.sequence
    self.patch_size = seq.patch_size
    config_values.length_range(
      seq.train_length_min, seq.train_length_max, "config.sequence.train_length"
    )
    self.buckets = length_buckets(seq.train_length_min, seq.train_length_max, seq.length_buckets)
    self.eval_lengths = config_values.positive_ints(config.eval.lengths, "config.eval.lengths")
    self.grid_lengths = config_values.positive_ints(
      config.eval.grid_lengths, "config.eval.grid_lengths"
    )
    parallel.host_batch_size(config.eval.batch_size, mesh)
    super().__init__(config, model_names(config, VARIANTS))
    self.data_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    self.affine = config.data.get("random_affine", False)  # absent from older config.json files
    if not isinstance(self.affine, bool):
      raise ValueError(f"config.data.random_affine = {self.affine!r}; expected True or False")
    self.affine_keys = [jax.random.fold_in(jax.random.PRNGKey(config.seed), i) for i in (4, 5)]
    self.source = data.open_split(config, config.data.train_split)
    self._selection_images = None
    if config.eval.get("select", "last") == "best":
      eval_source = self.augmented(data.open_split(config, config.data.eval_split))
      self._selection_images = SourceTail(eval_source, config.eval.select_examples)
      if self._selection_images.start < config.eval.num_examples:
        logging.warning(
          "Model selection: the %d validation images (the last of the %d in %r) overlap the "
          "first %d that the length sweep evaluates; the selected models' sweep is optimistic.",
          len(self._selection_images),
          len(eval_source),
          config.data.eval_split,
          config.eval.num_examples,
        )
    self._batches = data.StepBatches(
      self.source, config.batch_size, config.seed, jax.process_index(), jax.process_count()
    )

  def augmented(self, source):
    """`source` as evaluation reads it: with config.data.random_affine, each image i under one
    fixed RandomAffine draw keyed by i; otherwise unchanged."""
    return augment.AffineSource(source, self.affine_keys[1]) if self.affine else source

  def build(self, name, rng):
    return PatchReconstructor(
      name, self.config.model, patch_pixels=self.patch_size**2, rngs=nnx.Rngs(rng)
    )

  def init_index(self, name):
    """Paired starts: the Mamba variants share the first one's key, so they start from the same
    parameters and differ only in how the step is formed (alpha = 0 makes the length-adaptive
    model the fixed one at step 0); the transformer keeps its own."""
    if name.startswith("mamba"):
      return min(self.names.index(n) for n in self.names if n.startswith("mamba"))
    return self.names.index(name)

  def loss(self, model, batch):
    return jnp.mean(squared_error(model, batch))

  def train_step(self, state, batch):
    state, metrics = super().train_step(state, batch)
    metrics["context_length"] = batch["n_context"][0].astype(jnp.float32)
    return state, metrics

  def batch(self, step):
    """The global batch of `step`: this host's images, sequences at the bucket of this step's L."""
    images = self._batches(step)
    if self.affine:  # a fresh draw per example and epoch, keyed by the stream position
      images = dict(
        images, image=augment.random_affine(images["image"], self.affine_keys[0], images["index"])
      )
    seq = self.config.sequence
    length = draw_length(self.config.seed, step, seq.train_length_min, seq.train_length_max)
    bucket = bucket_for(length, self.buckets)
    sequences = patches.patch_sequences(
      jnp.asarray(images["image"]),
      self.data_key,
      bucket,
      seq.num_queries,
      self.patch_size,
      images["index"],
    )
    local = {key: np.asarray(value) for key, value in sequences.items()}
    local["n_context"] = np.full((len(images["index"]),), length, np.int32)
    return parallel.global_batch(local, self.mesh)

  # -- evaluation ------------------------------------------------------------------------------

  def validation_scores(self, state):
    """{model: MSE at the longest training length} on the last config.eval.select_examples
    images of the evaluation split (the sweep reads the first ones): the paper's selection."""
    length = self.config.sequence.train_length_max
    rows = report.length_sweep(
      self, state, self._selection_images, [length], len(self._selection_images)
    )
    return {row["model"]: row["mse"] for row in rows}

  def evaluate(self, state, workdir):
    source = self.augmented(data.open_split(self.config, self.config.data.eval_split))
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    self.write_discretization(state, out_dir)
    report.write(self, state, source, out_dir)  # stages.csv last: the sweep's finished mark
