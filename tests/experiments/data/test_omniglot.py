"""The Omniglot archive builder on the real archives, and its missing-file errors."""

import time

import numpy as np
import pytest

from experiments.data import omniglot


def test_archive_counts_and_deduplication(omniglot_dir):
  members = omniglot.background_members(omniglot_dir)
  assert [len(members[a]) for a in omniglot.BACKGROUND_ARCHIVES] == [2720, 3120]
  kept = omniglot.deduplicate(members)
  assert len(kept) == 4840  # Greek and Latin (1000 images) are in both archives.
  keys = [name.split("/", 1)[1] for _, name in kept]
  assert len(set(keys)) == len(keys)
  evaluation = dict(omniglot.evaluation_members(omniglot_dir))
  assert len(evaluation) == 800
  # run01/class_labels.txt pairs test item01 with training class08.
  assert evaluation["run01/test/item01.png"] == evaluation["run01/training/class08.png"]
  assert evaluation["run01/test/item01.png"] == "run01/class08"


def test_prepared_splits(omniglot_data_dir):
  builder = omniglot.prepare("/nonexistent/not/needed/once/prepared", omniglot_data_dir)
  train, validation = builder.as_data_source("train"), builder.as_data_source("validation")
  assert (len(train), len(validation)) == (4840, 800)
  example = train[0]
  assert example["image"].shape == (105, 105, 1) and example["image"].dtype == np.uint8
  assert set(np.unique(example["image"])) <= {0, 255}
  assert example["alphabet"] == example["character"].split(b"/")[0]


def test_labels_distinct_across_splits(omniglot_data_dir):
  builder = omniglot.prepare(None, omniglot_data_dir)
  train_labels = {int(e["label"]) for e in builder.as_data_source("train")}
  val = builder.as_data_source("validation")
  val_labels = {int(val[i]["label"]) for i in range(len(val))}
  assert train_labels == set(range(242))  # 8 alphabets, 242 characters.
  assert val_labels == set(range(242, 642))  # 20 runs x 20 characters.


def test_missing_folder_fails_fast(tmp_path):
  start = time.perf_counter()
  with pytest.raises(FileNotFoundError, match="Omniglot folder not found.*brendenlake/omniglot"):
    omniglot.prepare(tmp_path / "absent", tmp_path / "data")
  assert time.perf_counter() - start < 1.0


def test_missing_archive_named(tmp_path):
  for archive in omniglot.BACKGROUND_ARCHIVES:
    (tmp_path / archive).write_bytes(b"")
  with pytest.raises(FileNotFoundError, match=r"archive missing: .*all_runs\.zip"):
    omniglot.prepare(tmp_path, tmp_path / "data")
