"""One door to every image data set: a random-access source of model-ready (image, label) pairs.

Images come out grayscale, float32 in [-1, 1], resized to image_size x image_size (bilinear, in
float so nothing is re-quantised), labels int32. `digits` and `omniglot` (given its archive folder)
are prepared here on first use; any other name must already be a prepared TFDS data set.
"""

import os

import numpy as np

from experiments.data import digits, omniglot, prepared

# Sizes used when image_size is None: digits upscaled for patches, Omniglot as in
# docs/design.md section 6A.
DEFAULT_IMAGE_SIZE = {"digits": 32, "omniglot": 128}
# ITU-R BT.601 luma, as PIL's "L" conversion uses.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def default_data_dir():
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def to_model_image(image, size):
  """uint8 (H, W[, C]) -> float32 (size, size) grayscale in [-1, 1]; size None keeps H x W."""
  image = np.asarray(image, np.float32)
  if image.ndim == 3:
    image = image[..., 0] if image.shape[-1] == 1 else image[..., :3] @ LUMA
  if size is not None and image.shape != (size, size):
    from PIL import Image  # Pillow ships with matplotlib.

    image = np.asarray(
      Image.fromarray(image, mode="F").resize((size, size), Image.Resampling.BILINEAR), np.float32
    )
  return np.clip(image / 127.5 - 1.0, -1.0, 1.0)


class ImageSource:
  """Random access over TFDS records, converting each on read (grain's RandomAccessDataSource)."""

  def __init__(self, records, image_size):
    self.records = records
    self.image_size = image_size

  def __len__(self):
    return len(self.records)

  def __getitem__(self, index):
    record = self.records[index]
    return {
      "image": to_model_image(record["image"], self.image_size),
      "label": np.int32(record["label"]),
    }

  def __repr__(self):
    return f"ImageSource({self.records!r}, image_size={self.image_size})"


def image_source(name, split, *, data_dir=None, omniglot_dir=None, image_size=None):
  """Random-access source of {"image": (S, S) float32 in [-1, 1], "label": int32}.

  Args:
    name: "digits" (scikit-learn, prepared offline on first use), "omniglot" (prepared from the
      archives in omniglot_dir; without omniglot_dir, TFDS's own prepared `omniglot`), or the name
      of any TFDS image data set already prepared as array_record in data_dir ("mnist", ...).
    split: e.g. "train", "test" (digits), "validation" (omniglot archives, full or small).
    data_dir: TFDS data directory (where ours are written); default $TFDS_DATA_DIR or
      ~/tensorflow_datasets.
    image_size: output side S; None uses DEFAULT_IMAGE_SIZE for ours, the native size otherwise.
  """
  data_dir = os.fspath(data_dir) if data_dir else default_data_dir()
  if image_size is None:
    image_size = DEFAULT_IMAGE_SIZE.get(name)
  if name == "digits":
    records = digits.prepare(data_dir).as_data_source(split=split)
  elif name == "omniglot" and omniglot_dir:
    records = omniglot.prepare(omniglot_dir, data_dir).as_data_source(split=split)
  else:
    records = prepared.open_prepared(name, split, data_dir)
  return ImageSource(records, image_size)
