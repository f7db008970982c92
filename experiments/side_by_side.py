"""Several models trained side by side on the same batches, one optimiser each.

Studies A and B compare model families on equal terms: same data, same steps, same schedule. A
study subclasses SideBySide and provides `build(name, rng)` (an nnx module) and
`loss(model, batch)` (a scalar). Every model's structure and optimiser are fixed at construction
(from abstract shapes), so `train_step` and `model` work before, after or without `init_state`.

A study may give a model its own step budget (`train_steps(name)`, e.g. study B's CPU
transformer): every model then sees the same batches up to its budget, the run lasts the largest
budget (`num_train_steps`), and a model past its budget is skipped (`lax.cond`: no gradient is
computed) with its parameters and optimiser state frozen; its loss_<name> is NaN and is not
logged (`logged_metrics`).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from experiments import learned_alpha, optimizers
from experiments.multi_optimizer import MultiOptimizer


def model_names(config, variants):
  """config.models (a tuple of names) checked: a non-empty subset of `variants`, no repeats."""
  names = config.models
  if isinstance(names, str) or not isinstance(names, (tuple, list)):
    raise ValueError(
      f"config.models = {names!r}; expected a tuple of names from {variants}, "
      f"e.g. --config.models='(\"{variants[0]}\",)'"
    )
  names = list(names)
  unknown = [name for name in names if name not in variants]
  if not names or unknown or len(set(names)) != len(names):
    raise ValueError(
      f"config.models = {config.models!r}; expected a non-empty subset of "
      f"{variants}, each at most once"
    )
  return names


class SideBySide:
  def __init__(self, config, names):
    self.config, self.names = config, list(names)
    self._graphdefs, txs = {}, {}
    for name in self.names:
      abstract = nnx.eval_shape(lambda name=name: self.build(name, jax.random.key(0)))
      self._graphdefs[name], params = nnx.split(abstract, nnx.Param)
      txs[name] = optimizers.make_optimizer(
        self.optimizer_config(name), self.train_steps(name), params
      )
    self.optimizer = MultiOptimizer(txs)
    self.num_train_steps = max(self.train_steps(name) for name in self.names)

  def build(self, name, rng):
    raise NotImplementedError

  def loss(self, model, batch):
    raise NotImplementedError

  def optimizer_config(self, name):
    """The optimiser settings of model `name` (the same for all unless a study says otherwise)."""
    del name
    return self.config.optimizer

  def train_steps(self, name):
    """Model `name`'s step budget (its schedule's length): config.num_train_steps unless a study
    says otherwise."""
    del name
    return self.config.num_train_steps

  def init_index(self, name):
    """Model `name` is initialised from fold_in(rng, init_index(name)): its position in the
    config's models unless a study pairs models (equal indices: equal starting parameters)."""
    return self.names.index(name)

  def init_state(self, rng):
    params = {
      name: nnx.state(self.build(name, jax.random.fold_in(rng, self.init_index(name))), nnx.Param)
      for name in self.names
    }
    return self.optimizer.init_state(params)

  def graphdef(self, name):
    """Model `name`'s structure: nnx.merge(graphdef, params) rebuilds it."""
    return self._graphdefs[name]

  def model(self, state, name):
    return nnx.merge(self._graphdefs[name], state["params"][name])

  def train_step(self, state, batch):
    """One optimiser step of every model within its budget; metrics loss_<name> (NaN once the
    budget is spent) and the mean over the models still training, "loss", and for a model with
    a length-adaptive step alpha_{mean,min,max}_<name> after the step."""
    metrics, params, opt_state, training = {}, {}, {}, []
    for name in self.names:

      def update(name=name):
        def loss_fn(model_params):
          return self.loss(nnx.merge(self._graphdefs[name], model_params), batch)

        loss, grads = jax.value_and_grad(loss_fn)(state["params"][name])
        return (loss,) + self.optimizer.apply_part(
          name, state["params"][name], state["opt_state"][name], grads
        )

      def skip(name=name):
        return jnp.float32(jnp.nan), state["params"][name], state["opt_state"][name]

      if self.train_steps(name) >= self.num_train_steps:
        loss, params[name], opt_state[name] = update()
        active = jnp.bool_(True)
      else:
        active = state["step"] < self.train_steps(name)
        loss, params[name], opt_state[name] = jax.lax.cond(active, update, skip)
      metrics[f"loss_{name}"] = loss
      training.append(active)
    active = jnp.stack(training)
    losses = jnp.stack([metrics[f"loss_{n}"] for n in self.names])
    metrics["loss"] = jnp.sum(jnp.where(active, losses, 0.0)) / jnp.sum(active)
    state = {"params": params, "opt_state": opt_state, "step": state["step"] + 1}
    for name in self.names:
      metrics.update(learned_alpha.alpha_metrics(name, state["params"][name]))
    return state, metrics

  def logged_metrics(self, step, metrics):
    """The metrics the training loop logs after `step` steps (experiments/task.py): all but the
    loss of a model whose budget ended before that step (NaN, its step skipped)."""
    spent = {f"loss_{name}" for name in self.names if step > self.train_steps(name)}
    return {key: value for key, value in metrics.items() if key not in spent}

  def write_discretization(self, state, out_dir):
    """out_dir/discretization.csv: every model's learned alpha per layer (learned_alpha)."""
    return learned_alpha.write_csv(out_dir, {name: state["params"][name] for name in self.names})

  def combine_best(self, states):
    """One state from each model's own best state (model selection, experiments/selection.py):
    model `name` takes its parameters and optimiser state from states[name]."""
    return {
      "params": {name: states[name]["params"][name] for name in self.names},
      "opt_state": {name: states[name]["opt_state"][name] for name in self.names},
      "step": jnp.max(jnp.stack([states[name]["step"] for name in self.names])),
    }
