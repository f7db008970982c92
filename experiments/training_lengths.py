"""Lengths that vary during training (studies A and B): one length drawn per step, and a few
bucket lengths to build batches at, so one compiled step serves every length of a bucket.

A length-adaptive step learns nothing about L when every batch has the same L (its alpha's
gradient is (L / L_ref) - 1 = 0 times something), so both studies draw L per step.
"""

import math

import numpy as np


def draw_length(seed, step, min_length, max_length):
  """The length of global step `step`: uniform integer in [min_length, max_length], the same on
  every host (a pure function of seed and step)."""
  if not 1 <= min_length <= max_length:
    raise ValueError(f"Need 1 <= min_length <= max_length, got [{min_length}, {max_length}].")
  rng = np.random.default_rng([int(seed), int(step)])
  return int(rng.integers(min_length, max_length + 1))


def length_buckets(min_length, max_length, count):
  """Up to `count` bucket lengths covering [min_length, max_length], geometrically spaced."""
  if count <= 1 or min_length == max_length:
    return [max_length]
  ratio = (max_length / min_length) ** (1 / (count - 1))
  return sorted(
    {min(max_length, math.ceil(min_length * ratio**i)) for i in range(count)} | {max_length}
  )


def bucket_for(length, buckets):
  """The smallest bucket >= length."""
  for bucket in sorted(buckets):
    if bucket >= length:
      return bucket
  raise ValueError(f"Length {length} exceeds the largest bucket, {max(buckets)}.")
