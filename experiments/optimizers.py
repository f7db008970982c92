"""optax optimiser from the config: schedule, clipping, weight decay with the mamba_jax mask."""

import optax

from mamba_jax import weight_decay_mask

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
    core = optax.lamb(schedule, weight_decay=decay, mask=mask, **betas)
  clip = config.grad_clip_norm
  return optax.chain(optax.clip_by_global_norm(clip), core) if clip else core
