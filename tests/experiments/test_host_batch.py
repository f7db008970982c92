"""The per-host batch arithmetic every study shares."""

import numpy as np
import pytest

from experiments import host_batch


def test_host_batch_size_splits_over_hosts_and_devices():
  assert host_batch.host_batch_size(8, 4) == 2
  assert host_batch.host_batch_size(16, 2, device_count=8) == 8
  with pytest.raises(ValueError, match="not divisible by the process count 3"):
    host_batch.host_batch_size(8, 3)
  with pytest.raises(
    ValueError, match="config.batch_size = 12 is not divisible by the number of devices, 8"
  ):
    host_batch.host_batch_size(12, 1, device_count=8)
  with pytest.raises(ValueError, match="must be positive"):
    host_batch.host_batch_size(0, 1)


def test_host_examples_are_contiguous_slices_of_the_global_step():
  np.testing.assert_array_equal(host_batch.host_examples(3, 8, 1, 2), [28, 29, 30, 31])
  whole = host_batch.host_examples(5, 12)
  parts = np.concatenate([host_batch.host_examples(5, 12, p, 3) for p in range(3)])
  np.testing.assert_array_equal(parts, whole)
  np.testing.assert_array_equal(whole, np.arange(60, 72))
  assert whole.dtype == np.int64
  with pytest.raises(ValueError, match="outside"):
    host_batch.host_examples(0, 8, 2, 2)
