"""Training-time augmentation as a pure function of (key, example): torchvision's RandomRotation.

The paper's CIFAR-10 runs (Rathjens & Wiskott 2024; utils.get_datasets in
wiskott-lab/classification-reconstruction-encoder) feed the encoder transforms.RandomRotation(15)
followed by Normalize(0.5, 0.5). torchvision's RandomRotation(d) draws an angle uniform in
[-d, d) degrees and rotates the image counter-clockwise by it about its centre, with nearest-
neighbour interpolation; pixels whose source lies outside the image get fill = 0. That fill is
applied on ToTensor's [0, 1] scale, before the normalisation, which maps it to -1: black. The data
module's [-1, 1] scale (pixel / 127.5 - 1) is that same normalised scale, so fill = -1
(ROTATION_FILL) here matches it.

`rotate` follows torchvision's F.rotate on tensors: the output pixel at (row y, column x) reads
the source at

  x_s = c_x + cos(a) (x - c_x) - sin(a) (y - c_y),   y_s = c_y + sin(a) (x - c_x) + cos(a) (y - c_y)

with the centre (c_y, c_x) = ((H - 1) / 2, (W - 1) / 2) in pixel indices, rounded to the nearest
pixel (ties to even, as grid_sample's nearest mode), `fill` when that is outside the image. An
angle of 0 is the identity, 90 degrees is np.rot90.

One departure from the paper's code: it applies the transform to a whole batch tensor, and
torchvision draws one angle per call, so the 512 images of a batch there share one angle. Here
every example gets its own angle, uniform(fold_in(key, example_index)), where example_index is
the batch iterator's global stream position (step * global batch + position in the batch): the
angles are a pure function of (seed, step, example), so a resumed run and any device or host
layout see the same rotated images.
"""

import jax
import jax.numpy as jnp
import numpy as np

ROTATION_FILL = -1.0  # torchvision's fill 0 on [0, 1], after Normalize(0.5, 0.5)


def check_rotation_degrees(degrees, field="config.data.random_rotation_degrees"):
  """degrees as a float in [0, 180] (0: no rotation); ValueError naming `field` otherwise."""
  if (
    isinstance(degrees, bool)
    or not isinstance(degrees, (int, float))
    or not 0.0 <= degrees <= 180.0
  ):
    raise ValueError(
      f"{field} = {degrees!r}; expected a number of degrees in [0, 180] (0 turns the rotation off)"
    )
  return float(degrees)


def example_keys_index(example_index):
  """Global stream positions as uint32 (modulo 2**32), the form jax.random.fold_in takes."""
  return np.asarray(example_index, np.int64).astype(np.uint32)


def _angles(key, index, max_degrees):
  return jax.vmap(
    lambda i: jax.random.uniform(
      jax.random.fold_in(key, i), (), jnp.float32, -max_degrees, max_degrees
    )
  )(index)


def rotation_angles(key, example_index, max_degrees):
  """(batch,) float32 angles in degrees, uniform in [-max_degrees, max_degrees); the i-th depends
  on (key, example_index[i]) alone."""
  return _angles(key, jnp.asarray(example_keys_index(example_index)), max_degrees)


def rotate(images, angles, fill=ROTATION_FILL):
  """images (batch, H, W[, C]) each rotated counter-clockwise by its angle (batch,) in degrees
  about the image centre, nearest neighbour, pixels from outside the image set to `fill` (see the
  module docstring for the exact mapping)."""
  images = jnp.asarray(images)
  height, width = images.shape[1:3]
  c_y, c_x = (height - 1) / 2, (width - 1) / 2
  y, x = jnp.meshgrid(
    jnp.arange(height, dtype=jnp.float32) - c_y,
    jnp.arange(width, dtype=jnp.float32) - c_x,
    indexing="ij",
  )

  def one(image, angle):
    radians = jnp.deg2rad(jnp.asarray(angle, jnp.float32))
    cos, sin = jnp.cos(radians), jnp.sin(radians)
    source_x = jnp.round(cos * x - sin * y + c_x).astype(jnp.int32)
    source_y = jnp.round(sin * x + cos * y + c_y).astype(jnp.int32)
    inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
    pixels = image[jnp.clip(source_y, 0, height - 1), jnp.clip(source_x, 0, width - 1)]
    inside = inside.reshape(inside.shape + (1,) * (image.ndim - 2))
    return jnp.where(inside, pixels, jnp.asarray(fill, image.dtype))

  return jax.vmap(one)(images, jnp.asarray(angles, jnp.float32))


@jax.jit
def _random_rotation(images, key, index, max_degrees, fill):
  return rotate(images, _angles(key, index, max_degrees), fill)


def random_rotation(images, key, example_index, max_degrees, fill=ROTATION_FILL):
  """torchvision's RandomRotation(max_degrees) (fill -1 on the [-1, 1] scale), one angle per
  example: rotate(images, rotation_angles(key, example_index, max_degrees), fill), jitted."""
  index = jnp.asarray(example_keys_index(example_index))
  return _random_rotation(
    jnp.asarray(images), key, index, jnp.float32(max_degrees), jnp.float32(fill)
  )
