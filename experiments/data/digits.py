"""scikit-learn's bundled handwritten digits as a TFDS builder: the embedded, offline default.

1797 grayscale 8x8 images (values 0..16, rescaled here to 0..255) of the digits 0-9, shipped inside
scikit-learn, so preparing needs no network and takes about a second. Split without randomness:
the first 1437 images train, the last 360 test (the archive is ordered by writer, so the test
writers are mostly unseen).
"""

import numpy as np
import tensorflow_datasets as tfds

from experiments.data import builders

NAME = "digits"
NUM_TRAIN = 1437
NUM_EXAMPLES = 1797


class Digits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Not registered with TFDS: opened through `prepare`, never by name through TFDS's registry."""

  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "8x8 uint8 images (0..255), first 1437 train / last 360 test."}

  def _info(self):
    return builders.LocalDatasetInfo(
      builder=self,
      description="scikit-learn's handwritten digits (UCI optdigits test set), 8x8, 10 classes.",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
          "label": tfds.features.ClassLabel(num_classes=10),
        }
      ),
      supervised_keys=("image", "label"),
      homepage=(
        "https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html"
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ships with scikit-learn.
    return {
      "train": self._generate_examples(0, NUM_TRAIN),
      "test": self._generate_examples(NUM_TRAIN, NUM_EXAMPLES),
    }

  def _generate_examples(self, start, stop):
    from sklearn.datasets import load_digits  # Deferred: only preparing needs scikit-learn.

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    for i in range(start, stop):
      yield i, {"image": images[i], "label": int(digits.target[i])}


def prepare(data_dir):
  """Writes the array_record files under data_dir/digits/1.0.0 once; returns the builder."""
  builder = Digits(data_dir=str(data_dir), file_format="array_record")
  return builders.prepare(builder)
