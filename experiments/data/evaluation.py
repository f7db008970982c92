"""Evaluation batches: a split read once in fixed order, with the wrap-around weighted out."""

import math

import jax
import numpy as np

from experiments import host_batch
from experiments.data.iterator import batches


def evaluation_batches(source, global_batch, n_images, device_count=None):
  """Yields (this host's images, weights) covering the first n_images of `source` in order; the
  last batch wraps around to the start, and those examples get weight 0."""
  host_batch.host_batch_size(global_batch, jax.process_count(), device_count)
  steps = math.ceil(n_images / global_batch)
  for images in batches(
    source,
    global_batch,
    seed=0,
    shuffle=False,
    num_steps=steps,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  ):
    yield images, (images["index"] < n_images).astype(np.float32)
