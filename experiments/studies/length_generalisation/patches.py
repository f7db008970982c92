"""Study A's sequences (docs/design.md section 6A): random context patches with positions, then
query patches.

Every random choice is a pure function of (key, global example index, patch number):
  example key = fold_in(key, example_index); context patch i uses fold_in(fold_in(ek, 0), i),
  query j uses fold_in(fold_in(ek, 1), j).
So sequences do not depend on the host layout, and the context of length L is the first L
patches of any longer context: evaluating "after k patches" reads prefixes of one sequence.
jit compiles once per distinct (batch, context_length, num_queries), about 1.5 s on a 2-core CPU;
a trainer drawing L from a wide range can build the sequence at a bucket length >= L and pass L
as the model's `lengths`, which is exact thanks to the prefix property.

Geometry at image side S and patch side P (P = 4, S = 128 in the paper): centres (x, y) are
integers uniform in [P/2, S - P/2 - 1]; the patch at (x, y) covers rows y - P/2 .. y + P/2 - 1
and columns x - P/2 .. x + P/2 - 1, flattened row-major; its position is
((x - S/2) / (0.78125 S), (y - S/2) / (0.78125 S)) = ((x - 64) / 100, (y - 64) / 100) at S = 128.
"""

import functools

import jax
import jax.numpy as jnp

POSITION_SCALE = 0.78125  # Position unit as a fraction of S: 100 pixels at S = 128.


def positions(centres, image_size):
  """Integer centres (..., 2) as (x, y) -> float32 positions ((x - S/2) / (0.78125 S), ...)."""
  half = image_size / 2
  return (centres.astype(jnp.float32) - half) / (POSITION_SCALE * image_size)


def draw_centres(key, count, image_size, patch_size=4):
  """(count, 2) int32 centres (x, y), iid uniform in [P/2, S - P/2 - 1], i-th from fold_in(key, i).

  The paper's range: the patch's first row/column lies in [0, S - P - 1], so the image's last
  row and column are never covered (as in the paper's [2, 125] at S = 128).
  """

  def one(i):
    start = jax.random.randint(jax.random.fold_in(key, i), (2,), 0, image_size - patch_size)
    return start + patch_size // 2

  return jax.vmap(one)(jnp.arange(count, dtype=jnp.uint32))


def extract_patches(image, centres, patch_size=4):
  """image (S, S), centres (n, 2) as (x, y) -> (n, P * P) row-major patches."""
  start = centres - patch_size // 2
  offsets = jnp.arange(patch_size)
  rows = (start[:, 1, None] + offsets)[:, :, None]  # (n, P, 1)
  cols = (start[:, 0, None] + offsets)[:, None, :]  # (n, 1, P)
  return image[rows, cols].reshape(centres.shape[0], patch_size * patch_size)


@functools.partial(jax.jit, static_argnames=("context_length", "num_queries", "patch_size"))
def patch_sequences(
  images, key, context_length, num_queries=1024, patch_size=4, example_index=None
):
  """Builds one batch of sequences from images (batch, S, S) in [-1, 1].

  Args:
    key: the run's data key (the same for every step and host).
    context_length: L, the number of context patches (static).
    num_queries: Q, the number of query positions and targets (static; 1024 in the paper).
    example_index: (batch,) global stream positions of the examples (the batch iterator's
      "index"); None means arange(batch), for single-batch use.

  Returns:
    dict with context_patches (batch, L, P*P), context_positions (batch, L, 2),
    query_positions (batch, Q, 2), query_targets (batch, Q, P*P), all float32.
  """
  batch, height, width = images.shape
  if height != width:
    raise ValueError(f"Square images expected, got {height}x{width}.")
  if example_index is None:
    example_index = jnp.arange(batch)
  example_index = jnp.asarray(example_index).astype(jnp.uint32)

  def one(image, index):
    example_key = jax.random.fold_in(key, index)
    context = draw_centres(jax.random.fold_in(example_key, 0), context_length, width, patch_size)
    queries = draw_centres(jax.random.fold_in(example_key, 1), num_queries, width, patch_size)
    return {
      "context_patches": extract_patches(image, context, patch_size),
      "context_positions": positions(context, width),
      "query_positions": positions(queries, width),
      "query_targets": extract_patches(image, queries, patch_size),
    }

  return jax.vmap(one)(images.astype(jnp.float32), example_index)
