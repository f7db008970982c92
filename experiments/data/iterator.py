"""Deterministic, resumable, host-sliced batches on grain.

The stream is grain.MapDataset: source -> global shuffle(seed) -> repeat (each epoch reshuffled)
-> attach the stream position. Global step s holds stream positions [s * B, (s + 1) * B), so a
batch is a pure function of (seed, s): resuming at step s needs only s, and host p of n reads
only its slice [p * B / n, (p + 1) * B / n) of that global batch.
"""

import itertools

import grain
import numpy as np

from experiments import host_batch


def stream(source, seed, shuffle=True):
  """Endless grain.MapDataset of dict examples, each with "index" = its position in the stream."""
  ds = grain.MapDataset.source(source)
  if shuffle:
    ds = ds.shuffle(seed=int(seed) % 2**32)
  return ds.repeat().map_with_index(lambda i, example: {**example, "index": np.int64(i)})


def batches(
  source,
  global_batch,
  seed,
  start_step=0,
  process_index=0,
  process_count=1,
  *,
  num_steps=None,
  shuffle=True,
):
  """Yields this host's numpy batch dicts for steps start_step, start_step + 1, ...

  Each dict holds the source's keys stacked (local batch first) plus "index", the examples'
  global stream positions: derive per-example randomness from it (jax.random.fold_in), not from
  the host, and every host layout sees the same data. shuffle=False keeps the source order
  (evaluation); the stream wraps around at the end of the source either way.
  """
  host_batch.host_examples(start_step, global_batch, process_index, process_count)  # checks
  ds = stream(source, seed, shuffle)
  steps = (
    itertools.count(start_step) if num_steps is None else range(start_step, start_step + num_steps)
  )
  for step in steps:
    examples = [
      ds[int(i)] for i in host_batch.host_examples(step, global_batch, process_index, process_count)
    ]
    yield {key: np.stack([e[key] for e in examples]) for key in examples[0]}


class StepBatches:
  """This host's batch of any training step, as `batches` gives it, without restarting the
  stream when steps are asked for in order (the training loop's case)."""

  def __init__(self, source, global_batch, seed, process_index=0, process_count=1):
    self._args = (source, global_batch, seed)
    self._hosts = dict(process_index=process_index, process_count=process_count)
    self._batches, self._next_step = None, None

  def __call__(self, step):
    if self._batches is None or step != self._next_step:
      self._batches = batches(*self._args, start_step=step, **self._hosts)
    self._next_step = step + 1
    return next(self._batches)
