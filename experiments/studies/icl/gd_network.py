"""Study B's gradient-descent baseline for 2-layer ReLU networks (docs/design.md section 6B), as
Garg et al.'s GDModel: for each prompt and each prefix of i pairs, a fresh network
Linear(d, 100) -> ReLU -> Linear(100, 1) is trained by Adam (lr 5e-3, 100 steps, minibatches of
100 of the i context pairs, drawn afresh every step: the whole context while i <= 100) on the
squared error, then predicts x_i; position 0 predicts 0. The hyper-parameters are those of
their eval.py for relu_2nn_regression; the initialisation is PyTorch's nn.Linear default
(weights and biases uniform in +-1/sqrt(fan_in)).

Differences from their code, none of which changes what is fitted: the loss is each network's
own mean over its minibatch (theirs averages over all prompts too, a constant factor that Adam
removes up to its epsilon), and each prompt draws its own minibatches (theirs shares one draw).

It runs in JAX, vectorised over prompts and prefixes (every prefix trains on the whole prompt
with a mask, so n prefixes cost n networks over n points) with lax.scan over the Adam steps;
prompts are processed in chunks of about NETWORKS_PER_CHUNK networks to bound memory.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

HIDDEN = 100
LEARNING_RATE = 5e-3
STEPS = 100
MINIBATCH = 100
SEED = 0
NETWORKS_PER_CHUNK = 4096


def init_network(key, d, hidden=HIDDEN):
  """PyTorch's nn.Linear initialisation: every weight and bias ~ U(-1/sqrt(fan_in), +)."""
  keys = jax.random.split(key, 4)

  def uniform(k, shape, fan_in):
    bound = 1 / math.sqrt(fan_in)
    return jax.random.uniform(k, shape, minval=-bound, maxval=bound)

  return {
    "w1": uniform(keys[0], (d, hidden), d),
    "b1": uniform(keys[1], (hidden,), d),
    "w2": uniform(keys[2], (hidden,), hidden),
    "b2": uniform(keys[3], (), hidden),
  }


def apply_network(params, xs):
  return jax.nn.relu(xs @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def _fit_and_predict(key, xs, ys, context_size, hidden, learning_rate, steps, minibatch):
  """Trains one network on pairs j < context_size of one prompt; predicts x[context_size]."""
  n = xs.shape[0]
  init_key, batch_key = jax.random.split(key)
  params = init_network(init_key, xs.shape[1], hidden)
  optimizer = optax.adam(learning_rate)
  context = jnp.arange(n) < context_size

  def step(carry, step_key):
    params, state = carry
    scores = jnp.where(context, jax.random.uniform(step_key, (n,)), jnp.inf)
    chosen = context & (jnp.argsort(jnp.argsort(scores)) < minibatch)
    count = jnp.maximum(jnp.sum(chosen), 1)

    def loss(p):
      return jnp.sum(jnp.where(chosen, jnp.square(apply_network(p, xs) - ys), 0.0)) / count

    updates, state = optimizer.update(jax.grad(loss)(params), state, params)
    return (optax.apply_updates(params, updates), state), None

  carry = (params, optimizer.init(params))
  (params, _), _ = jax.lax.scan(step, carry, jax.random.split(batch_key, steps))
  prediction = apply_network(params, xs[jnp.minimum(context_size, n - 1)])
  return jnp.where(context_size > 0, prediction, 0.0)


@functools.partial(jax.jit, static_argnames=("hidden", "learning_rate", "steps", "minibatch"))
def _chunk(key, prompt_index, xs, ys, hidden, learning_rate, steps, minibatch):
  fit = functools.partial(
    _fit_and_predict, hidden=hidden, learning_rate=learning_rate, steps=steps, minibatch=minibatch
  )

  def prompt(index, x, y):
    prompt_key = jax.random.fold_in(key, index)
    prefixes = jnp.arange(x.shape[0])
    return jax.vmap(lambda i: fit(jax.random.fold_in(prompt_key, i), x, y, i))(prefixes)

  return jax.vmap(prompt)(prompt_index, xs, ys)


def gd_2nn(
  xs,
  ys,
  hidden=HIDDEN,
  learning_rate=LEARNING_RATE,
  steps=STEPS,
  minibatch=MINIBATCH,
  seed=SEED,
  networks_per_chunk=NETWORKS_PER_CHUNK,
):
  """(batch, n, d), (batch, n) -> (batch, n) float64 predictions; prompt b's networks draw from
  (seed, b, prefix) alone, so the result does not depend on the chunking."""
  xs, ys = np.asarray(xs, np.float32), np.asarray(ys, np.float32)
  if xs.ndim != 3 or ys.shape != xs.shape[:2]:
    raise ValueError(f"Expected xs (batch, n, d) and ys (batch, n); got {xs.shape}, {ys.shape}.")
  batch, n = ys.shape
  chunk = max(1, networks_per_chunk // n)
  key = jax.random.PRNGKey(seed)
  out = []
  chunk = min(chunk, batch)
  for start in range(0, batch, chunk):
    count = min(chunk, batch - start)
    index = np.arange(start, start + chunk, dtype=np.uint32)  # The last chunk padded: one shape.
    rows = np.minimum(index, batch - 1)
    predictions = _chunk(key, index, xs[rows], ys[rows], hidden, learning_rate, steps, minibatch)
    out.append(np.asarray(predictions)[:count])
  return np.concatenate(out).astype(np.float64)
