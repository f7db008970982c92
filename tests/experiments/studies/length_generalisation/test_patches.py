"""Study-A sequences: patch geometry, positions, ranges, reproducibility and host independence."""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.studies.length_generalisation.patches import (
  extract_patches,
  patch_sequences,
  positions,
)

S, P = 128, 4


def _coordinate_images(batch):
  """Pixel (r, c) of image b holds b * 1e6 + r * 1000 + c: a patch reveals where it came from."""
  r, c = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
  return jnp.asarray(np.stack([b * 1e6 + r * 1000 + c for b in range(batch)]), jnp.float32)


def _centres(patches, batch_offset=0):
  """(..., P*P) patches of coordinate images -> integer centres (..., 2) as (x, y)."""
  top_left = np.asarray(patches)[..., 0] % 1e6
  return np.stack([top_left % 1000 + P // 2, top_left // 1000 + P // 2], -1).astype(int)


def test_patch_equals_image_slice():
  image = jax.random.uniform(jax.random.key(0), (S, S), minval=-1, maxval=1)
  centres = jnp.array([[2, 2], [125, 125], [64, 30], [7, 100]])
  patches = extract_patches(image, centres, P)
  for (x, y), patch in zip(np.asarray(centres), np.asarray(patches)):
    np.testing.assert_array_equal(
      patch, np.asarray(image)[y - 2 : y + 2, x - 2 : x + 2].reshape(16)
    )


def test_position_formula_at_128():
  centres = jnp.array([[64, 64], [2, 125], [125, 2], [100, 14]])
  expected = (np.asarray(centres) - 64) / 100
  np.testing.assert_allclose(positions(centres, S), expected, rtol=1e-6)
  np.testing.assert_allclose(positions(jnp.array([[16, 41]]), 32), [[0.0, 1.0]], rtol=1e-6)


def test_sequences_geometry():
  images = _coordinate_images(3)
  out = patch_sequences(images, jax.random.key(1), 4000, num_queries=64)
  assert out["context_patches"].shape == (3, 4000, 16)
  assert out["context_positions"].shape == (3, 4000, 2)
  assert out["query_positions"].shape == (3, 64, 2)
  assert out["query_targets"].shape == (3, 64, 16)
  for kind in ("context", "query"):
    patches = out["context_patches" if kind == "context" else "query_targets"]
    centres = _centres(patches)
    # Each patch is the image slice around the centre its position names.
    np.testing.assert_allclose(out[f"{kind}_positions"], (centres - 64) / 100, rtol=1e-6)
    for b in range(3):
      for (x, y), patch in zip(centres[b][:50], np.asarray(patches[b])[:50]):
        np.testing.assert_array_equal(
          patch, np.asarray(images[b])[y - 2 : y + 2, x - 2 : x + 2].reshape(16)
        )
  centres = _centres(out["context_patches"])
  assert centres.min() == 2 and centres.max() == 125  # The whole range [2, 125], no more.
  assert abs(centres.mean() - 63.5) < 2.0  # Uniform.


def test_reproducible_random_order():
  images = _coordinate_images(2)
  a = patch_sequences(images, jax.random.key(7), 32, num_queries=8)
  b = patch_sequences(images, jax.random.key(7), 32, num_queries=8)
  c = patch_sequences(images, jax.random.key(8), 32, num_queries=8)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["context_positions"], c["context_positions"])
  centres = _centres(a["context_patches"][0])
  raster = np.lexsort((centres[:, 0], centres[:, 1]))
  assert not np.array_equal(raster, np.arange(32))  # Not in raster order.


def test_randomness_follows_example_index_not_batch_position():
  images = _coordinate_images(4) % 1e6  # Same pixels in every image.
  full = patch_sequences(
    images, jax.random.key(3), 16, num_queries=8, example_index=jnp.array([40, 41, 42, 43])
  )
  host = patch_sequences(
    images[2:], jax.random.key(3), 16, num_queries=8, example_index=jnp.array([42, 43])
  )
  for k in full:
    np.testing.assert_array_equal(full[k][2:], host[k])
  assert not np.array_equal(full["context_positions"][0], full["context_positions"][1])


def test_shorter_context_is_a_prefix():
  images = _coordinate_images(2)
  # Shapes shared with the tests above, so that nothing compiles again.
  short = patch_sequences(images, jax.random.key(5), 16, num_queries=8)
  long = patch_sequences(images, jax.random.key(5), 32, num_queries=8)
  np.testing.assert_array_equal(short["context_patches"], long["context_patches"][:, :16])
  np.testing.assert_array_equal(short["query_positions"], long["query_positions"])
