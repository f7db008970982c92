"""Mesh helpers on this process's devices."""

import jax
import numpy as np
import pytest

from experiments import parallel


def test_global_batch_is_sharded_over_the_data_axis():
  mesh = parallel.make_mesh()
  n = mesh.size
  batch = parallel.global_batch({"x": np.arange(4 * n).reshape(2 * n, 2)}, mesh)
  assert batch["x"].shape == (2 * n, 2)
  assert batch["x"].sharding.spec == jax.sharding.PartitionSpec("data")
  np.testing.assert_array_equal(batch["x"], np.arange(4 * n).reshape(2 * n, 2))


def test_indivisible_global_batch_is_refused_with_the_device_count():
  mesh = parallel.make_mesh()
  if mesh.size == 1:
    assert parallel.host_batch_size(5, mesh) == 5
    pytest.skip(
      "needs more than one device to be indivisible (test_train's 8-device run covers it)"
    )
  with pytest.raises(ValueError, match=f"not divisible by the number of devices, {mesh.size}"):
    parallel.host_batch_size(mesh.size + 1, mesh)
