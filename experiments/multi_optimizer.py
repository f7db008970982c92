"""Several parameter sets, one optax optimiser each, stepped together.

Both the side-by-side studies (one optimiser per model) and the trade-off study (one per network
part) keep their state as {"params": {part: ...}, "opt_state": {part: ...}, "step"} and apply
each part's own gradient with that part's own optimiser. This is that loop, written once.
"""

import jax.numpy as jnp
import optax


class MultiOptimizer:
  def __init__(self, optimizers):
    """optimizers: {part name: optax.GradientTransformation}, in a fixed order."""
    self.optimizers = dict(optimizers)

  def init_state(self, params):
    """The training state of `params` ({part: params}) at step 0."""
    return {
      "params": dict(params),
      "opt_state": {name: tx.init(params[name]) for name, tx in self.optimizers.items()},
      "step": jnp.zeros((), jnp.int32),
    }

  def apply_part(self, name, params, opt_state, grads):
    """(params, opt_state) of part `name` after one update with its gradient."""
    updates, opt_state = self.optimizers[name].update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  def apply(self, state, grads):
    """The state after one update of every part with its gradient in `grads` ({part: grads})."""
    params, opt_state = {}, {}
    for name in self.optimizers:
      params[name], opt_state[name] = self.apply_part(
        name, state["params"][name], state["opt_state"][name], grads[name]
      )
    return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}
