"""orbax checkpoints of the whole training state: parameters, optimiser state and step.

The data order is a pure function of (seed, step), so the step is the data-iterator position
too: restoring a checkpoint resumes the run exactly.
"""

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Periodic and final saves under workdir/checkpoints; restore of the latest complete one."""

  def __init__(self, directory, save_every_steps, max_to_keep=3):
    self._every = max(1, save_every_steps)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

  def latest_step(self):
    """The newest complete checkpoint (orbax never lists one that was cut off mid-save)."""
    return self._manager.latest_step()

  def save(self, step, state, force=False):
    """Saves at multiples of save_every_steps, or when forced; returns whether a save started.
    (orbax's own interval policy also saves the first step it sees; this one does not.)"""
    if not force and step % self._every:
      return False
    return self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, target, step=None):
    """Restores into the structure, shapes, dtypes and shardings of `target` (a pytree of arrays
    or of jax.ShapeDtypeStruct with .sharding), from `step` or the latest checkpoint."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()
