"""orbax round trip of a training state, restored against its abstract target."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import checkpointing


def _state(value):
  params = {"w": jnp.full((3, 2), value), "b": jnp.full((2,), value)}
  return {
    "params": params,
    "opt_state": optax.adam(1e-3).init(params),
    "step": jnp.asarray(int(value), jnp.int32),
  }


def test_save_restore_latest(tmp_path):
  ckpt = checkpointing.Checkpointer(tmp_path / "ckpt", save_every_steps=2, max_to_keep=2)
  assert ckpt.latest_step() is None
  assert ckpt.save(1, _state(1.0)) is False  # not on the interval
  assert ckpt.save(2, _state(2.0))
  assert ckpt.save(3, _state(3.0), force=True)
  ckpt.wait()
  assert ckpt.latest_step() == 3
  restored = ckpt.restore(_state(0.0))
  jax.tree_util.tree_map(np.testing.assert_array_equal, restored, _state(3.0))
  assert type(restored["opt_state"]) is type(_state(0.0)["opt_state"])  # namedtuples come back
  older = ckpt.restore(_state(0.0), step=2)
  np.testing.assert_array_equal(older["params"]["w"], 2.0)
  ckpt.close()


def test_reopening_finds_the_latest(tmp_path):
  ckpt = checkpointing.Checkpointer(tmp_path, save_every_steps=1)
  ckpt.save(5, _state(5.0))
  ckpt.close()
  again = checkpointing.Checkpointer(tmp_path, save_every_steps=1)
  assert again.latest_step() == 5
  again.close()
