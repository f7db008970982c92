"""Open a TFDS image data set that was prepared elsewhere (mnist, fashion_mnist, cifar10, ...).

Nothing here downloads. The files are looked for on disk first, without importing
tensorflow_datasets, so a missing data set fails in milliseconds with the command that prepares
it, instead of TFDS retrying the network for minutes. Only then does TFDS open the directory
(`tfds.builder_from_directory`, which needs neither the network nor the data set's builder code).
"""

import glob
import json
import os

KNOWN = ("mnist", "fashion_mnist", "cifar10", "omniglot")


def _parse(name):
  """'name[/config][:version]' -> (name/config path, version or None)."""
  path, _, version = name.partition(":")
  return path, (version or None)


def _version_key(version):
  try:
    return tuple(int(p) for p in version.split("."))
  except ValueError:
    return ()


def _split_files(version_dir, split):
  """The array_record files of a split (any `[...]` slice ignored) in version_dir."""
  return glob.glob(os.path.join(version_dir, f"*-{split.split('[', 1)[0]}.array_record*"))


def _how_to_prepare(name, data_dir, problem):
  data_dir = os.path.abspath(os.fspath(data_dir))
  return (
    f"TFDS data set {name!r} is not prepared in {data_dir}: {problem}. Nothing is downloaded "
    f"here. On a machine with network access run\n"
    f"  tfds build {name} --file_format=array_record --data_dir=DIR\n"
    f"(pip install tensorflow-datasets), then copy DIR/{_parse(name)[0]}/ into {data_dir}/ "
    f"so that {data_dir}/{_parse(name)[0]}/<version>/ holds dataset_info.json and the "
    f"*.array_record-* files."
  )


def find_prepared(name, data_dir, split=None):
  """Path of the prepared version directory; FileNotFoundError saying how to prepare it.

  Pure file-system checks: the highest version (or the one named) under data_dir/name/ that holds
  dataset_info.json, array_record files and, if a split is given, that split's files.
  """
  if not data_dir:
    raise FileNotFoundError(_how_to_prepare(name, ".", "no data_dir was given"))
  path, version = _parse(name)
  root = os.path.join(os.fspath(data_dir), path)
  if not os.path.isdir(root):
    raise FileNotFoundError(_how_to_prepare(name, data_dir, f"{root} does not exist"))
  versions = [version] if version else sorted(os.listdir(root), key=_version_key, reverse=True)
  problems = []
  for v in versions:
    version_dir = os.path.join(root, v)
    if not os.path.isfile(os.path.join(version_dir, "dataset_info.json")):
      problems.append(f"{version_dir} has no dataset_info.json")
      continue
    if not glob.glob(os.path.join(version_dir, "*.array_record*")):
      other = sorted(os.path.basename(p) for p in glob.glob(os.path.join(version_dir, "*-*-of-*")))
      problems.append(
        f"{version_dir} has no array_record files"
        + (f" (found {other[0]}, ...: another file format)" if other else "")
      )
      continue
    if split is not None:
      if not _split_files(version_dir, split):
        with open(os.path.join(version_dir, "dataset_info.json")) as f:
          known = [s.get("name") for s in json.load(f).get("splits", [])]
        raise ValueError(f"{name!r} in {version_dir} has no split {split!r}; it has {known}.")
    return version_dir
  raise FileNotFoundError(
    _how_to_prepare(name, data_dir, "; ".join(problems) or f"{root} holds no version directory")
  )


def open_prepared(name, split, data_dir):
  """Random-access source (tfds ArrayRecordDataSource) of a prepared split; records are dicts."""
  version_dir = find_prepared(name, data_dir, split)
  import tensorflow_datasets as tfds  # After the check: a missing data set never pays for it.

  return tfds.builder_from_directory(version_dir).as_data_source(split=split)
