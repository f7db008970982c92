"""Several models trained side by side on the same batches, one optimiser each.

The studies compare model families on equal terms: same data, same steps, same schedule. A task
subclasses SideBySide and provides `build(name, rng)` (an nnx module) and `loss(model, batch)`
(a scalar); this class owns the state layout {"params", "opt_state", "step"}, keyed by model
name, and the joint training step.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from experiments import optimizers


def model_names(config, variants):
  """config.models ("a,b,...") as a list, each one of `variants`."""
  names = [name.strip() for name in config.models.split(",") if name.strip()]
  unknown = [name for name in names if name not in variants]
  if not names or unknown or len(set(names)) != len(names):
    raise ValueError(f"config.models = {config.models!r}; expected a comma-separated subset of "
                     f"{variants}, each at most once")
  return names


class SideBySide:

  def __init__(self, config, names):
    self.config, self.names = config, names
    self._graphdefs, self._optimizers = {}, {}

  def build(self, name, rng):
    raise NotImplementedError

  def loss(self, model, batch):
    raise NotImplementedError

  def optimizer_config(self, name):
    """The optimiser settings of model `name` (the same for all unless a task says otherwise)."""
    del name
    return self.config.optimizer

  def init_state(self, rng):
    params, opt_state = {}, {}
    for i, name in enumerate(self.names):
      graphdef, model_params = nnx.split(self.build(name, jax.random.fold_in(rng, i)), nnx.Param)
      tx = optimizers.make_optimizer(self.optimizer_config(name), self.config.num_train_steps,
                                     model_params)
      self._graphdefs[name], self._optimizers[name] = graphdef, tx
      params[name], opt_state[name] = model_params, tx.init(model_params)
    return {"params": params, "opt_state": opt_state, "step": jnp.zeros((), jnp.int32)}

  def graphdef(self, name):
    """Model `name`'s structure (after init_state): nnx.merge(graphdef, params) rebuilds it."""
    return self._graphdefs[name]

  def model(self, state, name):
    return nnx.merge(self._graphdefs[name], state["params"][name])

  def train_step(self, state, batch):
    """One optimiser step of every model; metrics loss_<name> and their mean, "loss"."""
    metrics, params, opt_state = {}, {}, {}
    for name in self.names:
      def loss_fn(model_params, name=name):
        return self.loss(nnx.merge(self._graphdefs[name], model_params), batch)

      loss, grads = jax.value_and_grad(loss_fn)(state["params"][name])
      updates, opt_state[name] = self._optimizers[name].update(
          grads, state["opt_state"][name], state["params"][name])
      params[name] = optax.apply_updates(state["params"][name], updates)
      metrics[f"loss_{name}"] = loss
    metrics["loss"] = jnp.mean(jnp.stack([metrics[f"loss_{n}"] for n in self.names]))
    return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, metrics
