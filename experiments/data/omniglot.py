"""Omniglot from its original archives (Lake et al. 2015) as a TFDS builder, read in place.

Two builder configs, each prepared in its own folder (data_dir/omniglot_archives/CONFIG/VERSION),
so a run that finds the full archives never reuses a prepared small set:

`full` (used whenever images_background.zip and images_evaluation.zip are both in the folder):
train: the 30 background alphabets of images_background.zip (19,280 images); validation: the 20
evaluation alphabets of images_evaluation.zip (13,180 images), unseen in train.

`small` (the fallback, logged as a warning): train: the background alphabets of
images_background_small1.zip and images_background_small2.zip, combined and de-duplicated by
`alphabet/characterNN/file.png` (the two overlap in Greek and Latin). validation: the 800 images
of all_runs.zip, drawn from the evaluation alphabets, unseen in train.

Images are stored as they are published: 105x105, one channel, ink 0 and background 255.

Labels number characters across both splits: train characters 0.. in sorted
`alphabet/characterNN` order, then the validation characters (`alphabet/characterNN` for full;
for small `runNN/classMM`, a one-shot run's test item taking the class its class_labels.txt
assigns). `character` and `alphabet` (empty for small's validation: all_runs does not name them)
read back as bytes. The builder is named
`omniglot_archives` and kept out of TFDS's registry, apart from TFDS's own `omniglot`, whose
layout and splits differ.
"""

import io
import os
import zipfile

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from experiments.data import builders

NAME = "omniglot_archives"
BACKGROUND_ARCHIVES = ("images_background_small1.zip", "images_background_small2.zip")
EVALUATION_ARCHIVE = "all_runs.zip"
ARCHIVES = BACKGROUND_ARCHIVES + (EVALUATION_ARCHIVE,)
FULL_BACKGROUND_ARCHIVE = "images_background.zip"
FULL_EVALUATION_ARCHIVE = "images_evaluation.zip"
FULL_ARCHIVES = (FULL_BACKGROUND_ARCHIVE, FULL_EVALUATION_ARCHIVE)
FULL, SMALL = "full", "small"
SOURCE_URL = "https://github.com/brendenlake/omniglot"
IMAGE_SIZE = 105


def check_archives(archive_dir):
  """Raises FileNotFoundError naming the first missing folder or archive (no I/O beyond stat)."""
  archive_dir = os.fspath(archive_dir) if archive_dir else ""
  where = (
    f"Get them from {SOURCE_URL} (python/images_background_small1.zip, "
    "python/images_background_small2.zip, python/one-shot-classification/all_runs.zip), "
    "put them in one folder and pass it as the Omniglot folder (omniglot_dir)."
  )
  if not archive_dir or not os.path.isdir(archive_dir):
    raise FileNotFoundError(
      f"Omniglot folder not found: {archive_dir!r}. It must hold {', '.join(ARCHIVES)}. {where}"
    )
  for archive in ARCHIVES:
    path = os.path.join(archive_dir, archive)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"Omniglot archive missing: {path}. {where}")


def archive_set(archive_dir):
  """FULL when both full archives are in archive_dir, else SMALL (logged: results differ)."""
  archive_dir = os.fspath(archive_dir) if archive_dir else ""
  if archive_dir and all(os.path.isfile(os.path.join(archive_dir, a)) for a in FULL_ARCHIVES):
    logging.info("Omniglot: the full set (%s) from %s", ", ".join(FULL_ARCHIVES), archive_dir)
    return FULL
  logging.warning(
    "Omniglot: %s not both in %r; using the SMALL subsets (%s: 8 training alphabets, the 800 "
    "one-shot images as validation), not the paper's full set.",
    " and ".join(FULL_ARCHIVES),
    archive_dir,
    ", ".join(ARCHIVES),
  )
  return SMALL


def full_members(archive_dir, archive):
  """[(archive, member, 'alphabet/characterNN')] for each PNG of one full archive, sorted."""
  with zipfile.ZipFile(os.path.join(archive_dir, archive)) as z:
    names = sorted(n for n in z.namelist() if n.endswith(".png"))
  return [(archive, n, n.split("/", 1)[1].rsplit("/", 1)[0]) for n in names]


def background_members(archive_dir):
  """{archive: [member path of each PNG]} for the two background archives, in archive order."""
  members = {}
  for archive in BACKGROUND_ARCHIVES:
    with zipfile.ZipFile(os.path.join(archive_dir, archive)) as z:
      members[archive] = [n for n in z.namelist() if n.endswith(".png")]
  return members


def deduplicate(members):
  """[(archive, member)] keeping the first occurrence of each `alphabet/characterNN/file.png`."""
  seen, kept = set(), []
  for archive, names in members.items():
    for name in names:
      key = name.split("/", 1)[1]  # Drop the archive's top folder.
      if key not in seen:
        seen.add(key)
        kept.append((archive, name))
  return kept


def evaluation_members(archive_dir):
  """[(member, 'runNN/classMM')] for the 800 one-shot images, with their character."""
  items = []
  with zipfile.ZipFile(os.path.join(archive_dir, EVALUATION_ARCHIVE)) as z:
    for labels_file in sorted(n for n in z.namelist() if n.endswith("class_labels.txt")):
      run = labels_file.split("/")[0]
      pairs = [line.split() for line in z.read(labels_file).decode().splitlines() if line.strip()]
      for test_item, training_item in pairs:
        character = f"{run}/{os.path.splitext(os.path.basename(training_item))[0]}"
        items.append((test_item, character))
        items.append((training_item, character))
  return sorted(dict(items).items())  # One entry per image.


def _decode_png(data):
  from PIL import Image  # Pillow ships with matplotlib, a project dependency.

  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert("L"), dtype=np.uint8)[..., None]


class OmniglotArchives(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Reads the archives of its config from `archive_dir` (required only when preparing)."""

  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Configs small and full."}
  BUILDER_CONFIGS = [
    tfds.core.BuilderConfig(
      name=SMALL, description="train = small1 + small2 de-duplicated, validation = all_runs."
    ),
    tfds.core.BuilderConfig(
      name=FULL,
      description="train = images_background (30 alphabets), validation = images_evaluation "
      "(20 alphabets).",
    ),
  ]

  def __init__(self, *, archive_dir=None, **kwargs):
    self._archive_dir = archive_dir
    super().__init__(**kwargs)

  def _info(self):
    return builders.LocalDatasetInfo(
      builder=self,
      description=__doc__.split("\n\n")[0],
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8),
          "label": tfds.features.Scalar(dtype=np.int64),
          "character": tfds.features.Text(),
          "alphabet": tfds.features.Text(),
        }
      ),
      supervised_keys=("image", "label"),
      homepage=SOURCE_URL,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The archives are read in place, never downloaded.
    if self.builder_config.name == FULL:
      train = full_members(self._archive_dir, FULL_BACKGROUND_ARCHIVE)
      validation = full_members(self._archive_dir, FULL_EVALUATION_ARCHIVE)
      return self._splits(train, validation)
    check_archives(self._archive_dir)
    train = [
      (archive, name, name.split("/", 1)[1].rsplit("/", 1)[0])
      for archive, name in deduplicate(background_members(self._archive_dir))
    ]
    validation = [
      (EVALUATION_ARCHIVE, name, character)
      for name, character in evaluation_members(self._archive_dir)
    ]
    return self._splits(train, validation)

  def _splits(self, train, validation):
    """Both splits' generators, labels numbering train's characters then validation's."""
    characters = sorted({c for _, _, c in train}) + sorted({c for _, _, c in validation})
    labels = {c: i for i, c in enumerate(characters)}
    return {
      "train": self._generate_examples(train, labels),
      "validation": self._generate_examples(validation, labels),
    }

  def _generate_examples(self, items, labels):
    """items: (archive, member, character); keys `alphabet/characterNN/file.png` or `runNN/...`."""
    archives = {}
    try:
      for archive, name, character in items:
        if archive not in archives:
          archives[archive] = zipfile.ZipFile(os.path.join(self._archive_dir, archive))
        # all_runs does not name the evaluation alphabets.
        alphabet = "" if archive == EVALUATION_ARCHIVE else character.split("/")[0]
        key = name if archive == EVALUATION_ARCHIVE else name.split("/", 1)[1]
        yield (
          key,
          {
            "image": _decode_png(archives[archive].read(name)),
            "label": labels[character],
            "character": character,
            "alphabet": alphabet,
          },
        )
    finally:
      for z in archives.values():
        z.close()


def prepare(archive_dir, data_dir):
  """Writes data_dir/omniglot_archives/{full,small}/1.0.0 from the archives once; returns the
  builder. The full set is used when its two archives are in archive_dir (archive_set).

  Checks the archives before anything else unless the data set is already prepared, so a
  missing file fails at once.
  """
  config = archive_set(archive_dir)
  builder = OmniglotArchives(
    archive_dir=archive_dir, config=config, data_dir=str(data_dir), file_format="array_record"
  )
  if not builder.is_prepared():
    if config == SMALL:
      check_archives(archive_dir)
    builders.prepare(builder)
  return builder
