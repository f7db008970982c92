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


def write_fake_archive(path, top, alphabets, characters=2, images=2):
  """A zip in the real layout top/<Alphabet>/characterNN/<file>.png; returns its image count."""
  import io
  import zipfile

  from PIL import Image

  count = 0
  with zipfile.ZipFile(path, "w") as z:
    for a in alphabets:
      for c in range(1, characters + 1):
        for i in range(images):
          pixels = np.full((105, 105), 255, np.uint8)
          pixels[count % 105, :] = 0
          buffer = io.BytesIO()
          Image.fromarray(pixels, mode="L").convert("1").save(buffer, format="PNG")
          z.writestr(f"{top}/{a}/character{c:02d}/{c:04d}_{i:02d}.png", buffer.getvalue())
          count += 1
  return count


@pytest.fixture
def full_archives(tmp_path):
  folder = tmp_path / "omniglot"
  folder.mkdir()
  train = write_fake_archive(
    folder / omniglot.FULL_BACKGROUND_ARCHIVE, "images_background", ["Greek", "Latin", "Korean"]
  )
  validation = write_fake_archive(
    folder / omniglot.FULL_EVALUATION_ARCHIVE, "images_evaluation", ["Atlantean", "Kannada"]
  )
  return folder, train, validation


def test_full_archives_used_when_present(full_archives, tmp_path):
  folder, train_count, validation_count = full_archives
  builder = omniglot.prepare(folder, tmp_path / "data")
  assert builder.builder_config.name == omniglot.FULL
  assert "omniglot_archives/full/" in str(builder.data_dir)
  train, validation = builder.as_data_source("train"), builder.as_data_source("validation")
  assert (len(train), len(validation)) == (train_count, validation_count) == (12, 8)
  train_alphabets = {train[i]["alphabet"] for i in range(len(train))}
  validation_alphabets = {validation[i]["alphabet"] for i in range(len(validation))}
  assert train_alphabets == {b"Greek", b"Latin", b"Korean"}
  assert validation_alphabets == {b"Atlantean", b"Kannada"}
  example = validation[0]
  assert example["image"].shape == (105, 105, 1) and set(np.unique(example["image"])) <= {0, 255}
  assert example["character"].split(b"/")[0] == example["alphabet"]
  train_labels = {int(train[i]["label"]) for i in range(len(train))}
  validation_labels = {int(validation[i]["label"]) for i in range(len(validation))}
  assert train_labels == set(range(6)) and validation_labels == set(range(6, 10))


def test_small_set_not_reused_once_full_archives_arrive(full_archives, tmp_path):
  """A data_dir holding the prepared small set is not read as the full one (and vice versa)."""
  folder, _, _ = full_archives
  data_dir = tmp_path / "data"
  full = omniglot.prepare(folder, data_dir)
  # Without the full archives the small set is wanted: not the prepared full one.
  assert omniglot.archive_set(tmp_path / "absent") == omniglot.SMALL
  with pytest.raises(FileNotFoundError, match="Omniglot folder not found"):
    omniglot.prepare(tmp_path / "absent", data_dir)
  assert omniglot.prepare(folder, data_dir).data_dir == full.data_dir


def test_fallback_to_small_is_logged(tmp_path, caplog):
  import logging

  (tmp_path / omniglot.FULL_BACKGROUND_ARCHIVE).write_bytes(b"")  # evaluation archive missing
  with caplog.at_level(logging.WARNING):
    assert omniglot.archive_set(tmp_path) == omniglot.SMALL
  assert "SMALL" in caplog.text and omniglot.FULL_EVALUATION_ARCHIVE in caplog.text
