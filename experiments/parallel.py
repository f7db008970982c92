"""Data parallelism over every device of every host: one mesh axis, "data".

Parameters and optimiser state are replicated, the batch is split along its first axis, and
`jax.jit` inserts the gradient all-reduce (this is how `jax.pmap` is implemented in current JAX).
Each host feeds only its own slice of the global batch.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from experiments import host_batch

DATA_AXIS = "data"


def initialize_distributed(
  coordinator_address=None, num_processes=None, process_id=None, auto=False
):
  """Joins a multi-host job when asked: explicitly (coordinator, process count and id), or with
  auto=True from the cluster environment JAX detects (TPU pods, SLURM, ...). Otherwise a
  single-process run, and nothing is called."""
  if coordinator_address is not None or num_processes is not None:
    jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
  elif auto:
    jax.distributed.initialize()


def make_mesh():
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def host_batch_size(global_batch, mesh):
  """The examples this host reads per step; the global batch must split evenly over the mesh's
  devices (and so over hosts)."""
  return host_batch.host_batch_size(global_batch, jax.process_count(), mesh.size)


def replicated(mesh):
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh):
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def global_batch(local_batch, mesh):
  """A dict of this host's numpy arrays -> global jax.Arrays sharded over the data axis."""
  sharding = batch_sharded(mesh)
  return {
    key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
    for key, value in local_batch.items()
  }
