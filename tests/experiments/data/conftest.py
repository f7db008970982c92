"""Shared data fixtures: prepared data sets in session tmp dirs, no network, fake TFDS data sets."""

import contextlib
import os
import pathlib
import socket

import numpy as np
import pytest

# The real Omniglot archives, beside the project (../shared/datasets/omniglot from the root).
OMNIGLOT_DIR = os.environ.get(
  "OMNIGLOT_DIR",
  str(pathlib.Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "omniglot"),
)


def _refuse(*args, **kwargs):
  raise OSError(f"network access attempted in a test: {args}")


@contextlib.contextmanager
def no_network():
  """Makes any socket connection fail loudly inside the block (preparing must be offline)."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(socket.socket, "connect", _refuse)
    mp.setattr(socket.socket, "connect_ex", _refuse)
    mp.setattr(socket, "create_connection", _refuse)
    yield


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
  """A data_dir with digits prepared (offline)."""
  from experiments.data import digits

  data_dir = tmp_path_factory.mktemp("tfds_digits")
  with no_network():
    digits.prepare(data_dir)
  return data_dir


@pytest.fixture(scope="session")
def omniglot_dir():
  if not os.path.isdir(OMNIGLOT_DIR):
    pytest.skip(
      f"Omniglot archives not found at {OMNIGLOT_DIR} (set OMNIGLOT_DIR to the folder "
      "holding images_background_small1/2.zip and all_runs.zip)"
    )
  return OMNIGLOT_DIR


@pytest.fixture(scope="session")
def omniglot_data_dir(tmp_path_factory, omniglot_dir):
  """A data_dir with the Omniglot archives prepared once per session (about 5 s)."""
  from experiments.data import omniglot

  data_dir = tmp_path_factory.mktemp("tfds_omniglot")
  with no_network():
    omniglot.prepare(omniglot_dir, data_dir)
  return data_dir


def write_fake_tfds(data_dir, name, version, shape, sizes):
  """Prepares a stand-in for a TFDS image data set (PNG `image`, `label`) as array_record.

  Same on-disk layout as `tfds build NAME --file_format=array_record`: data_dir/NAME/VERSION/
  with dataset_info.json, features.json and NAME-SPLIT.array_record-* files. Pixel values are
  a known function of the example: image[i] = (i * 7 + pixel index) % 256 per channel offset.
  """
  import tensorflow_datasets as tfds
  from PIL import Image

  from experiments.data import builders

  class Fake(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(version)

    def _info(self):
      return builders.LocalDatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(
          {
            "image": tfds.features.Image(shape=shape),
            "label": tfds.features.ClassLabel(num_classes=10),
          }
        ),
      )

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(n) for split, n in sizes.items()}

    def _generate_examples(self, n):
      for i in range(n):
        yield i, {"image": Image.fromarray(fake_image(i, shape)), "label": i % 10}

  Fake.name = name
  return builders.prepare(Fake(data_dir=str(data_dir), file_format="array_record"))


def fake_image(i, shape):
  pixels = (np.arange(np.prod(shape)).reshape(shape) + 7 * i) % 256
  return pixels.astype(np.uint8).squeeze()
