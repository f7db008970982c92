"""What our own TFDS builders share: no remote metadata lookup and an offline prepare."""

import tensorflow_datasets as tfds


class LocalDatasetInfo(tfds.core.DatasetInfo):
  """DatasetInfo for data sets that exist only locally.

  TFDS calls initialize_from_bucket whenever a builder is created before its data is prepared: it
  makes a fresh temporary directory (never removed) and, where GCS access is enabled, asks the
  network for precomputed metadata. Ours have none to fetch.
  """

  def initialize_from_bucket(self):
    pass


def prepare(builder):
  """Writes the builder's array_record files unless present (a no-op then); returns the builder."""
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder
