"""optax optimiser from the config: schedule, clipping, weight decay with the mamba_jax mask.

"lamb" is LAMB with the usual exclusion: the trust ratio ||param|| / ||update|| scales the
updates of weight matrices only (rank >= 2 per layer; one ratio per layer of a stacked
MambaStack), never vectors, scalars or zero-norm parameters. optax.lamb applies it to every
parameter, which freezes a parameter that starts at zero (a bias, the length-adaptive alpha):
it grows by a factor of about (1 + lr) per step (docs/design.md section 6.0). With weight decay
0, the image-reconstruction paper's LAMB is Adam (it skips the ratio altogether).
"""

import jax
import optax

from mamba_jax import weight_decay_mask
from mamba_jax.optim import is_stacked, parameter_rank

OPTIMIZERS = ("adam", "adamw", "lamb")
SCHEDULES = ("constant", "cosine", "warmup_constant", "warmup_cosine")


def make_schedule(config, total_steps):
  """config: learning_rate, schedule, warmup_steps, end_learning_rate_factor."""
  lr, warmup = config.learning_rate, config.warmup_steps
  end = lr * config.end_learning_rate_factor
  if config.schedule not in SCHEDULES:
    raise ValueError(
      f"config.optimizer.schedule = {config.schedule!r}; expected one of {SCHEDULES}"
    )
  if config.schedule == "constant":
    return optax.constant_schedule(lr)
  if config.schedule == "cosine":
    return optax.cosine_decay_schedule(lr, max(total_steps, 1), alpha=end / lr if lr else 0.0)
  if config.schedule == "warmup_constant":
    return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)], [warmup]
    )
  return optax.warmup_cosine_decay_schedule(
    0.0, lr, max(warmup, 1), max(total_steps, warmup + 1), end_value=end
  )


def make_optimizer(config, total_steps, params):
  """config (the `optimizer` ConfigDict): name, learning_rate, schedule, weight_decay,
  grad_clip_norm (0 disables), b1, b2, eps, warmup_steps, end_learning_rate_factor: every field
  is set in the study's config file. Weight decay spares A_log, D, biases and norms."""
  if config.name not in OPTIMIZERS:
    raise ValueError(f"config.optimizer.name = {config.name!r}; expected one of {OPTIMIZERS}")
  schedule = make_schedule(config, total_steps)
  betas = dict(b1=config.b1, b2=config.b2, eps=config.eps)
  decay = config.weight_decay
  mask = weight_decay_mask(params)
  if config.name == "adam":
    if decay:
      raise ValueError("config.optimizer.weight_decay must be 0 with adam; use adamw")
    core = optax.adam(schedule, **betas)
  elif config.name == "adamw":
    core = optax.adamw(schedule, weight_decay=decay, mask=mask, **betas)
  else:
    core = optax.chain(
      optax.scale_by_adam(**betas),
      optax.add_decayed_weights(decay, mask=mask),
      scale_matrices_by_trust_ratio(),
      optax.scale_by_learning_rate(schedule),
    )
  clip = config.grad_clip_norm
  return optax.chain(optax.clip_by_global_norm(clip), core) if clip else core


def scale_matrices_by_trust_ratio():
  """optax.scale_by_trust_ratio on every weight matrix (per layer under a stacked layout) and
  the identity on vectors and scalars. A zero-norm parameter or update keeps a ratio of 1
  (optax's rule)."""
  trust = optax.scale_by_trust_ratio()

  def ratio(update, param):
    return trust.update(update, optax.EmptyState(), param)[0]

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("lamb's trust ratio needs the parameters: tx.update(grads, state, params)")

    def scale(path, update, param):
      if parameter_rank(path, param) < 2:
        return update
      return jax.vmap(ratio)(update, param) if is_stacked(path) else ratio(update, param)

    return jax.tree_util.tree_map_with_path(scale, updates, params), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
