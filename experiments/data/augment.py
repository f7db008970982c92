"""Augmentation as a pure function of (key, example): torchvision's RandomRotation and
RandomAffine.

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
# The image-reconstruction paper's RandomAffine (Rathjens et al. 2026; its training script
# training/train_prepended_mamba.py in wiskott-lab/image-reconstruction-mamba), on training and
# validation images: degrees 180, scale (0.5, 1.5), translate (0.4, 0.4), fill 1.0 on [0, 1]
# (white, Omniglot's background), which is +1 after Normalize(0.5, 0.5).
AFFINE_DEGREES = 180.0
AFFINE_SCALE = (0.5, 1.5)
AFFINE_TRANSLATE = 0.4
AFFINE_FILL = 1.0


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


def _warp(images, source_coordinates, fill):
  """Nearest-neighbour resampling: the output pixel at (row y, column x) of example b reads the
  source at source_coordinates(b, x - c_x, y - c_y) (offsets from the centre, as (x, y)), `fill`
  outside the image."""
  images = jnp.asarray(images)
  height, width = images.shape[1:3]
  c_y, c_x = (height - 1) / 2, (width - 1) / 2
  y, x = jnp.meshgrid(
    jnp.arange(height, dtype=jnp.float32) - c_y,
    jnp.arange(width, dtype=jnp.float32) - c_x,
    indexing="ij",
  )

  def one(image, b):
    offset_x, offset_y = source_coordinates(b, x, y)
    source_x = jnp.round(offset_x + c_x).astype(jnp.int32)
    source_y = jnp.round(offset_y + c_y).astype(jnp.int32)
    inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
    pixels = image[jnp.clip(source_y, 0, height - 1), jnp.clip(source_x, 0, width - 1)]
    inside = inside.reshape(inside.shape + (1,) * (image.ndim - 2))
    return jnp.where(inside, pixels, jnp.asarray(fill, image.dtype))

  return jax.vmap(one)(images, jnp.arange(images.shape[0]))


def rotate(images, angles, fill=ROTATION_FILL):
  """images (batch, H, W[, C]) each rotated counter-clockwise by its angle (batch,) in degrees
  about the image centre, nearest neighbour, pixels from outside the image set to `fill` (see the
  module docstring for the exact mapping)."""
  radians = jnp.deg2rad(jnp.asarray(angles, jnp.float32))
  cos, sin = jnp.cos(radians), jnp.sin(radians)
  return _warp(images, lambda b, x, y: (cos[b] * x - sin[b] * y, sin[b] * x + cos[b] * y), fill)


def affine(images, angles, scales, translations, fill=AFFINE_FILL):
  """torchvision's F.affine on tensors without shear, nearest neighbour: each image (batch, H,
  W[, C]) rotated clockwise by angles (batch,) degrees (F.affine's direction, the opposite of
  F.rotate's), scaled by scales (batch,) and shifted by translations (batch, 2) pixels as (x
  right, y down), about the image centre. The output pixel at offset p from the centre reads the
  source at S(-angle) (p - t) / scale, S(-angle) = [[cos, sin], [-sin, cos]] in (x, y-down):
  F.affine's inverse matrix. angle 0, scale 1, t 0 is the identity; scale 1, t 0 is
  rotate(images, -angles)."""
  radians = jnp.deg2rad(jnp.asarray(angles, jnp.float32))
  cos, sin = jnp.cos(radians), jnp.sin(radians)
  scales = jnp.asarray(scales, jnp.float32)
  translations = jnp.asarray(translations, jnp.float32)

  def source(b, x, y):
    x, y = x - translations[b, 0], y - translations[b, 1]
    return (cos[b] * x + sin[b] * y) / scales[b], (cos[b] * y - sin[b] * x) / scales[b]

  return _warp(images, source, fill)


def affine_parameters(key, example_index, image_size):
  """The paper's RandomAffine draws, one per example, a pure function of (key, example_index[i]):
  (angles (batch,) uniform in [-180, 180), scales (batch,) uniform in [0.5, 1.5), translations
  (batch, 2) whole pixels, each round(uniform(-0.4 S, 0.4 S)) as torchvision rounds them).
  example_index: uint32 (example_keys_index)."""
  lo, hi = AFFINE_SCALE
  limit = AFFINE_TRANSLATE * image_size

  def one(i):
    angle_key, scale_key, shift_key = jax.random.split(jax.random.fold_in(key, i), 3)
    angle = jax.random.uniform(angle_key, (), jnp.float32, -AFFINE_DEGREES, AFFINE_DEGREES)
    scale = jax.random.uniform(scale_key, (), jnp.float32, lo, hi)
    shift = jnp.round(jax.random.uniform(shift_key, (2,), jnp.float32, -limit, limit))
    return angle, scale, shift

  return jax.vmap(one)(jnp.asarray(example_index, jnp.uint32))


@jax.jit
def _random_affine(images, key, index):
  return affine(images, *affine_parameters(key, index, images.shape[2]))


def random_affine(images, key, example_index):
  """The paper's RandomAffine (degrees 180, scale 0.5-1.5, translate 0.4, fill +1), drawn per
  example from (key, example_index): affine(images, *affine_parameters(...)), jitted. Square
  images (batch, S, S[, C])."""
  index = jnp.asarray(example_keys_index(example_index))
  return _random_affine(jnp.asarray(images, jnp.float32), key, index)


class AffineSource:
  """A random-access image source whose item i has "image" transformed by random_affine keyed by
  i: one fixed draw per image, the same for every model and length that reads it. An image is
  transformed on its first read and kept (an evaluation reads the same few images for every
  model, length and stage)."""

  def __init__(self, source, key):
    self.source, self.key = source, key
    self._transformed = {}

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    index = int(index)
    if index not in self._transformed:
      item = dict(self.source[index])
      image = jnp.asarray(item["image"])[None]
      item["image"] = np.asarray(random_affine(image, self.key, np.array([index])))[0]
      self._transformed[index] = item
    return dict(self._transformed[index])


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
