"""Several parameter sets, each stepped by its own optimiser, equal to stepping each alone."""

import jax.numpy as jnp
import numpy as np
import optax

from experiments.multi_optimizer import MultiOptimizer


def test_each_part_steps_with_its_own_optimiser():
  params = {"a": {"w": jnp.ones(3)}, "b": {"w": jnp.full(2, 2.0)}}
  grads = {"a": {"w": jnp.array([1.0, -1.0, 0.5])}, "b": {"w": jnp.array([0.2, 0.4])}}
  txs = {"a": optax.sgd(0.1), "b": optax.adam(0.01)}
  multi = MultiOptimizer(txs)
  state = multi.init_state(params)
  assert int(state["step"]) == 0
  new = multi.apply(state, grads)
  assert int(new["step"]) == 1
  for name, tx in txs.items():
    updates, _ = tx.update(grads[name], tx.init(params[name]), params[name])
    np.testing.assert_allclose(
      new["params"][name]["w"], optax.apply_updates(params[name], updates)["w"], rtol=1e-6
    )
