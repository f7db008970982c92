"""One door to every image data set: a random-access source of model-ready (image, label) pairs.

Images come out float32 in [-1, 1] (pixel / 127.5 - 1), resized to image_size x image_size
(bilinear, in float so nothing is re-quantised), labels int32. channels = 1 (the default) makes
every image grayscale, (S, S) (RGB through ITU-R BT.601 luma); channels = 3 keeps the colours,
(S, S, 3), and is refused for grayscale data sets. `digits` and `omniglot` (given its archive
folder) are prepared here on first use; any other name must already be a prepared TFDS data set.
"""

import os

import numpy as np

from experiments.data import digits, omniglot, prepared

# Sizes used when image_size is None: digits upscaled for patches, Omniglot as in
# docs/design.md section 6A.
DEFAULT_IMAGE_SIZE = {"digits": 32, "omniglot": 128}
# ITU-R BT.601 luma, as PIL's "L" conversion uses.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Output channels: 1 = grayscale (S, S), 3 = RGB (S, S, 3).
CHANNELS = (1, 3)
# Data sets without colour: channels = 3 is refused for them before anything is opened (any other
# data set is checked on its first image).
GRAYSCALE = ("digits", "mnist", "fashion_mnist", "kmnist", "emnist", "omniglot")


def default_data_dir():
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def check_channels(channels):
  """channels (1 or 3) unchanged; ValueError naming config.data.channels otherwise."""
  if isinstance(channels, bool) or channels not in CHANNELS:
    raise ValueError(
      f"config.data.channels = {channels!r}; expected 1 (grayscale) or 3 (RGB, for colour "
      "data sets)"
    )
  return channels


def is_colour(image):
  """Whether an (H, W[, C]) image has colour channels (C >= 3)."""
  shape = np.shape(image)
  return len(shape) == 3 and shape[-1] >= 3


def _resize(plane, size):
  """One float32 (H, W) plane, bilinear to (size, size), in float."""
  from PIL import Image  # Pillow ships with matplotlib.

  return np.asarray(
    Image.fromarray(plane, mode="F").resize((size, size), Image.Resampling.BILINEAR), np.float32
  )


def to_model_image(image, size, channels=1):
  """uint8 (H, W[, C]) -> float32 in [-1, 1]: (size, size) grayscale for channels = 1, (size,
  size, 3) RGB for channels = 3 (an alpha channel dropped); size None keeps H x W."""
  check_channels(channels)
  image = np.asarray(image, np.float32)
  if channels == 1:
    if image.ndim == 3:
      image = image[..., 0] if image.shape[-1] == 1 else image[..., :3] @ LUMA
  elif is_colour(image):
    image = image[..., :3]
  else:
    raise ValueError(
      f"config.data.channels = 3 needs RGB images, got one of shape {image.shape} (grayscale): "
      "use channels = 1"
    )
  if size is not None and image.shape[:2] != (size, size):
    if image.ndim == 2:
      image = _resize(image, size)
    else:  # channel by channel: PIL's float mode holds one
      image = np.stack([_resize(image[..., c], size) for c in range(image.shape[-1])], -1)
  return np.clip(image / 127.5 - 1.0, -1.0, 1.0)


class ImageSource:
  """Random access over TFDS records, converting each on read (grain's RandomAccessDataSource)."""

  def __init__(self, records, image_size, channels=1):
    self.records = records
    self.image_size = image_size
    self.channels = check_channels(channels)

  def __len__(self):
    return len(self.records)

  def __getitem__(self, index):
    record = self.records[index]
    return {
      "image": to_model_image(record["image"], self.image_size, self.channels),
      "label": np.int32(record["label"]),
    }

  def __repr__(self):
    return f"ImageSource({self.records!r}, image_size={self.image_size}, channels={self.channels})"


def image_source(name, split, *, data_dir=None, omniglot_dir=None, image_size=None, channels=1):
  """Random-access source of {"image": (S, S) or (S, S, 3) float32 in [-1, 1], "label": int32}.

  Args:
    name: "digits" (scikit-learn, prepared offline on first use), "omniglot" (prepared from the
      archives in omniglot_dir; without omniglot_dir, TFDS's own prepared `omniglot`), or the name
      of any TFDS image data set already prepared as array_record in data_dir ("mnist", ...).
    split: e.g. "train", "test" (digits), "validation" (omniglot archives, full or small).
    data_dir: TFDS data directory (where ours are written); default $TFDS_DATA_DIR or
      ~/tensorflow_datasets.
    image_size: output side S; None uses DEFAULT_IMAGE_SIZE for ours, the native size otherwise.
    channels: 1 makes every image grayscale, (S, S); 3 keeps the colours, (S, S, 3): a
      ValueError for a grayscale data set (one of GRAYSCALE, refused before anything is opened,
      or any other whose first image has no colour channels).
  """
  check_channels(channels)
  if channels == 3 and name.partition(":")[0].partition("/")[0] in GRAYSCALE:
    raise ValueError(
      f"config.data.channels = 3, but {name!r} is a grayscale data set: use channels = 1"
    )
  data_dir = os.fspath(data_dir) if data_dir else default_data_dir()
  if image_size is None:
    image_size = DEFAULT_IMAGE_SIZE.get(name)
  if name == "digits":
    records = digits.prepare(data_dir).as_data_source(split=split)
  elif name == "omniglot" and omniglot_dir:
    records = omniglot.prepare(omniglot_dir, data_dir).as_data_source(split=split)
  else:
    records = prepared.open_prepared(name, split, data_dir)
  if channels == 3 and len(records) and not is_colour(records[0]["image"]):
    raise ValueError(
      f"config.data.channels = 3, but the {name!r} {split!r} split holds grayscale images "
      f"(shape {np.shape(records[0]['image'])}): use channels = 1"
    )
  return ImageSource(records, image_size, channels)
