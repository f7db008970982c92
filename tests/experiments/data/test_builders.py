"""Our builders skip TFDS's remote metadata lookup, which leaves a temporary directory behind."""

import tempfile

import numpy as np
import pytest

from experiments.data import builders, digits


def _no_mkdtemp(*args, **kwargs):
  raise AssertionError("TFDS's remote-metadata lookup ran (it starts with tempfile.mkdtemp)")


def test_unprepared_builder_does_no_remote_lookup(tmp_path, monkeypatch):
  monkeypatch.setattr(tempfile, "mkdtemp", _no_mkdtemp)
  builder = digits.Digits(data_dir=str(tmp_path), file_format="array_record")
  assert isinstance(builder.info, builders.LocalDatasetInfo)
  assert not builder.is_prepared()


def test_plain_dataset_info_would_do_the_lookup(tmp_path, monkeypatch):
  # The guard above is meaningful: an ordinary DatasetInfo takes that path.
  import tensorflow_datasets as tfds

  class Plain(digits.Digits, skip_registration=True):
    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({"x": tfds.features.Scalar(dtype=np.int64)}),
      )

  monkeypatch.setattr(tempfile, "mkdtemp", _no_mkdtemp)
  with pytest.raises(AssertionError, match="remote-metadata lookup ran"):
    Plain(data_dir=str(tmp_path), file_format="array_record")
