"""The scikit-learn digits builder: prepares offline, fixed splits, faithful uint8 pixels."""

import socket
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

from experiments.data import digits
from tests.experiments.data.conftest import no_network


def test_network_guard_blocks_connections():
  # The guard the prepare fixtures run under must really refuse sockets.
  with no_network(), pytest.raises(OSError, match="network access attempted"):
    socket.create_connection(("127.0.0.1", 9))


def test_split_sizes_and_files(digits_dir):
  version_dir = digits_dir / "digits" / "1.0.0"
  assert (version_dir / "dataset_info.json").is_file()
  assert list(version_dir.glob("digits-train.array_record-*"))
  builder = digits.prepare(digits_dir)
  assert len(builder.as_data_source("train")) == 1437
  assert len(builder.as_data_source("test")) == 360


def test_records_match_sklearn_rescaled(digits_dir):
  sk = load_digits()
  expected = np.round(sk.images * 255 / 16).astype(np.uint8)
  for split, rows in (("train", range(0, 1437)), ("test", range(1437, 1797))):
    source = digits.prepare(digits_dir).as_data_source(split)
    stored = sorted(
      (source[i]["image"].tobytes(), int(source[i]["label"])) for i in range(len(source))
    )
    wanted = sorted((expected[r][..., None].tobytes(), int(sk.target[r])) for r in rows)
    assert stored == wanted, split
  example = source[0]
  assert example["image"].dtype == np.uint8 and example["image"].shape == (8, 8, 1)
  all_train = np.stack([e["image"] for e in digits.prepare(digits_dir).as_data_source("train")])
  assert all_train.min() == 0 and all_train.max() == 255


def test_second_prepare_reuses_files(digits_dir):
  start = time.perf_counter()
  digits.prepare(digits_dir)
  assert time.perf_counter() - start < 1.0
