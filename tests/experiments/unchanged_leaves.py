"""A test helper for "a few steps move every parameter": the leaves training left unchanged."""

import jax
import numpy as np


def unchanged_leaves(before, after):
  """Key paths of the leaves of pytree `before` equal (bitwise) to those of `after`."""
  paths = jax.tree_util.tree_flatten_with_path(before)[0]
  return [
    jax.tree_util.keystr(path)
    for (path, a), b in zip(paths, jax.tree.leaves(after))
    if np.array_equal(np.asarray(a), np.asarray(b))
  ]
