"""image_source: float32 in [-1, 1] at the requested size, grayscale or (channels = 3) RGB, for
every kind of data set; the channel count checked."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.data import digits, sources
from experiments.data.sources import image_source, to_model_image
from tests.experiments.data.conftest import fake_image, write_fake_tfds


def _reference(image_uint8, size):
  """Independent path: jax.image.resize (bilinear, half-pixel centres) of the scaled image."""
  x = jnp.asarray(image_uint8, jnp.float32) / 127.5 - 1.0
  return np.asarray(jax.image.resize(x, (size, size), "bilinear"))


def test_scaling_and_identity_size():
  image = np.array([[0, 255], [51, 204]], np.uint8)
  np.testing.assert_allclose(to_model_image(image, None), [[-1, 1], [-0.6, 0.6]], atol=1e-6)
  np.testing.assert_allclose(to_model_image(image[..., None], 2), [[-1, 1], [-0.6, 0.6]], atol=1e-6)


@pytest.mark.parametrize("shape,size", [((8, 8), 32), ((105, 105), 128), ((32, 32), 20)])
def test_resize_is_bilinear(shape, size):
  image = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
  out = to_model_image(image, size)
  assert out.shape == (size, size) and out.dtype == np.float32
  assert -1.0 <= out.min() and out.max() <= 1.0
  if size > shape[0]:  # Upsampling: PIL and jax.image agree (no antialiasing involved).
    np.testing.assert_allclose(out, _reference(image, size), atol=1e-5)


def test_rgb_becomes_luma():
  image = np.zeros((2, 2, 3), np.uint8)
  image[0, 0] = (255, 0, 0)
  image[0, 1] = (0, 255, 0)
  image[1, 0] = (0, 0, 255)
  expected = np.array([[0.299, 0.587], [0.114, 0.0]]) * 2 - 1
  np.testing.assert_allclose(to_model_image(image, None), expected, atol=1e-5)


def test_digits_default_upscaled(digits_dir):
  source = image_source("digits", "train", data_dir=digits_dir)
  assert len(source) == 1437
  assert len(image_source("digits", "test", data_dir=digits_dir)) == 360
  size = sources.DEFAULT_IMAGE_SIZE["digits"]
  images = np.stack([source[i]["image"] for i in range(50)])
  assert images.shape == (50, size, size) and images.dtype == np.float32
  assert images.min() == -1.0 and images.max() <= 1.0 and images.max() > 0.5
  records = digits.prepare(digits_dir).as_data_source("train")
  np.testing.assert_allclose(
    source[3]["image"], _reference(records[3]["image"][..., 0], size), atol=1e-5
  )
  assert source[3]["label"] == records[3]["label"] and source[3]["label"].dtype == np.int32


def test_digits_native_size(digits_dir):
  source = image_source("digits", "test", data_dir=digits_dir, image_size=8)
  records = digits.prepare(digits_dir).as_data_source("test")
  np.testing.assert_allclose(source[7]["image"], records[7]["image"][..., 0] / 127.5 - 1, atol=1e-6)


def test_prepared_rgb_dataset_grayscale(tmp_path):
  write_fake_tfds(tmp_path, "cifar10", "3.0.2", (32, 32, 3), {"train": 4})
  source = image_source("cifar10", "train", data_dir=tmp_path, image_size=16)
  example = source[1]
  assert example["image"].shape == (16, 16)
  rgb = fake_image(int(example["label"]), (32, 32, 3))
  expected = to_model_image(rgb.astype(np.float32) @ sources.LUMA, 16)
  np.testing.assert_allclose(example["image"], expected, atol=1e-5)


def test_missing_prepared_dataset(tmp_path):
  with pytest.raises(FileNotFoundError, match="tfds build fashion_mnist"):
    image_source("fashion_mnist", "train", data_dir=tmp_path)


def test_omniglot_at_128(omniglot_dir, omniglot_data_dir):
  source = image_source(
    "omniglot", "validation", data_dir=omniglot_data_dir, omniglot_dir=omniglot_dir
  )
  assert len(source) == 800
  image = source[0]["image"]
  assert image.shape == (128, 128) and image.dtype == np.float32
  assert image.min() == -1.0 and image.max() == 1.0  # Black ink on white background.
  assert (
    len(image_source("omniglot", "train", data_dir=omniglot_data_dir, omniglot_dir=omniglot_dir))
    == 4840
  )


def test_prepared_rgb_dataset_keeps_colours_with_three_channels(tmp_path):
  write_fake_tfds(tmp_path, "cifar10", "3.0.2", (32, 32, 3), {"train": 4})
  native = image_source("cifar10", "train", data_dir=tmp_path, channels=3)
  example = native[2]
  assert example["image"].shape == (32, 32, 3) and example["image"].dtype == np.float32
  rgb = fake_image(int(example["label"]), (32, 32, 3))
  np.testing.assert_allclose(example["image"], rgb / 127.5 - 1.0, atol=1e-6)
  assert not np.allclose(example["image"][..., 0], example["image"][..., 1])  # colour kept
  resized = image_source("cifar10", "train", data_dir=tmp_path, image_size=16, channels=3)[2]
  assert resized["image"].shape == (16, 16, 3)
  for c in range(3):  # each channel resized as a grayscale plane would be
    np.testing.assert_allclose(resized["image"][..., c], to_model_image(rgb[..., c], 16), atol=1e-6)
  # The default, channels = 1, is the luma conversion of before.
  gray = image_source("cifar10", "train", data_dir=tmp_path, image_size=16, channels=1)[2]
  np.testing.assert_allclose(
    gray["image"], to_model_image(rgb.astype(np.float32) @ sources.LUMA, 16), atol=1e-5
  )


def test_rgba_drops_alpha():
  image = np.zeros((2, 2, 4), np.uint8)
  image[..., 0], image[..., 3] = 255, 128
  out = to_model_image(image, None, channels=3)
  assert out.shape == (2, 2, 3)
  np.testing.assert_allclose(out[..., 0], 1.0)
  np.testing.assert_allclose(out[..., 1:], -1.0)


@pytest.mark.parametrize("channels", [0, 2, 4, True, "3", None])
def test_bad_channel_counts(channels, tmp_path):
  with pytest.raises(ValueError, match=r"config\.data\.channels = .*expected 1 .* or 3"):
    image_source("cifar10", "train", data_dir=tmp_path, channels=channels)
  with pytest.raises(ValueError, match=r"config\.data\.channels"):
    to_model_image(np.zeros((2, 2, 3), np.uint8), None, channels=channels)


@pytest.mark.parametrize("name", ["digits", "mnist", "fashion_mnist", "omniglot", "mnist:3.0.1"])
def test_three_channels_refused_for_grayscale_sets_before_opening(name, tmp_path):
  """Refused by name, before any preparing or opening (mnist is not even prepared here)."""
  with pytest.raises(ValueError, match=r"config\.data\.channels = 3.*grayscale"):
    image_source(name, "train", data_dir=tmp_path, channels=3)
  assert not os.listdir(tmp_path)


def test_three_channels_refused_for_grayscale_images(tmp_path):
  """Another data set whose images have one channel: refused on its first image."""
  write_fake_tfds(tmp_path, "gray_letters", "1.0.0", (12, 12, 1), {"train": 3})
  with pytest.raises(ValueError, match=r"config\.data\.channels = 3.*grayscale images"):
    image_source("gray_letters", "train", data_dir=tmp_path, channels=3)
  assert image_source("gray_letters", "train", data_dir=tmp_path)[0]["image"].shape == (12, 12)
  with pytest.raises(ValueError, match=r"config\.data\.channels = 3 needs RGB"):
    to_model_image(np.zeros((4, 4), np.uint8), None, channels=3)
