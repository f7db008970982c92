"""Opening prepared TFDS data sets: fast, explicit failure when absent; reading when present."""

import json
import time

import numpy as np
import pytest

from experiments.data import prepared
from tests.experiments.data.conftest import fake_image, no_network, write_fake_tfds


@pytest.mark.parametrize("name", prepared.KNOWN)
def test_missing_dataset_fails_fast_with_instructions(tmp_path, name):
  start = time.perf_counter()
  with no_network(), pytest.raises(FileNotFoundError) as error:
    prepared.open_prepared(name, "train", tmp_path)
  elapsed = time.perf_counter() - start
  assert elapsed < 1.0, f"took {elapsed:.2f} s"
  message = str(error.value)
  assert f"tfds build {name} --file_format=array_record --data_dir=DIR" in message
  assert str(tmp_path) in message and f"DIR/{name}/" in message


def test_other_file_format_is_reported(tmp_path):
  version_dir = tmp_path / "mnist" / "3.0.1"
  version_dir.mkdir(parents=True)
  (version_dir / "dataset_info.json").write_text(json.dumps({"name": "mnist"}))
  (version_dir / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"")
  start = time.perf_counter()
  with pytest.raises(FileNotFoundError, match="no array_record files.*tfrecord"):
    prepared.open_prepared("mnist", "train", tmp_path)
  assert time.perf_counter() - start < 1.0


def test_no_data_dir(tmp_path):
  with pytest.raises(FileNotFoundError, match="no data_dir"):
    prepared.find_prepared("mnist", None)


def test_reads_prepared_dataset(tmp_path):
  write_fake_tfds(tmp_path, "mnist", "3.0.1", (28, 28, 1), {"train": 12, "test": 5})
  with no_network():  # Opening and reading a prepared data set stays on disk.
    records = prepared.open_prepared("mnist", "test", tmp_path)
    labels = sorted(int(records[i]["label"]) for i in range(5))
  assert len(records) == 5
  assert labels == [0, 1, 2, 3, 4]
  example = records[0]
  i = int(example["label"])
  np.testing.assert_array_equal(example["image"][..., 0], fake_image(i, (28, 28, 1)))


def test_picks_highest_version_and_named_version(tmp_path):
  write_fake_tfds(tmp_path, "mnist", "3.0.1", (28, 28, 1), {"train": 3})
  write_fake_tfds(tmp_path, "mnist", "3.0.10", (28, 28, 1), {"train": 4})
  assert prepared.find_prepared("mnist", tmp_path).endswith("3.0.10")
  assert len(prepared.open_prepared("mnist:3.0.1", "train", tmp_path)) == 3


def test_unknown_split(tmp_path):
  write_fake_tfds(tmp_path, "mnist", "3.0.1", (28, 28, 1), {"train": 3})
  with pytest.raises(ValueError, match=r"no split 'validation'.*\['train'\]"):
    prepared.open_prepared("mnist", "validation", tmp_path)
