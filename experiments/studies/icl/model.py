"""Sequence models that regress in context (study B, docs/design.md section 6B; Grazzi et al.
2024).

A prompt x_1, y_1, x_2, y_2, ... (tokens in R^d, y zero-padded to d) goes through a linear
embedding, a backbone and a linear read-out to one number per token; the outputs at the x
tokens are the predictions (`function_classes.read_predictions`).

Variants (the `models` list of an icl config): "mamba" (fixed step), "mamba_length_adaptive"
(the step scales with the prompt's token count L, docs/design.md section 4; L_ref sits at the middle
of the training range of token counts), "transformer" (GPT-2
style, no positional encoding), "s4d" (non-selective diagonal SSM). Each reads its sizes from
config.model.<family>, family = mamba | transformer | s4d.
"""

import jax.numpy as jnp
from flax import nnx

import mamba_jax
from experiments import model_builders

VARIANTS = ("mamba", "mamba_length_adaptive", "transformer", "s4d")


def family(variant):
  """The config.model section a variant reads: both Mamba variants share "mamba"."""
  return "mamba" if variant.startswith("mamba") else variant


class ICLRegressor(nnx.Module):
  def __init__(self, variant, model_config, d, *, rngs):
    """variant: one of VARIANTS; model_config: the config.model ConfigDict; d: token width."""
    if variant not in VARIANTS:
      raise ValueError(f"Unknown in-context model {variant!r}; expected one of {VARIANTS}")
    self.variant = variant
    section = model_config[family(variant)]
    # read by the task: per-family learning rates and step budgets
    study_fields = ("learning_rate", "num_train_steps")
    if variant == "transformer":
      self.backbone = model_builders.causal_transformer(
        section, d, 1, rngs=rngs, ignore=study_fields
      )
    elif variant == "s4d":
      self.backbone = model_builders.s4d_model(section, d, 1, rngs=rngs, ignore=study_fields)
    else:
      adaptive = variant == "mamba_length_adaptive"
      config = model_builders.mamba_config(
        section,
        ignore=study_fields,
        discretization="length_adaptive" if adaptive else "fixed",
        length_ref=section.length_ref if adaptive else None,
      )
      self.backbone = mamba_jax.MambaModel(config, d, 1, rngs=rngs)

  def __call__(self, prompt, return_residuals=False, *, n_points=None, dropout_key=None):
    """prompt (batch, tokens, d) -> outputs (batch, tokens) float32; with return_residuals
    also the residual stream entering each layer and after the last (n_layers + 1 arrays).

    n_points (scalar, optional): the prompt's real number of points when it is right-padded to
    a bucket; the length-adaptive step is then told L = 2 * n_points tokens instead of the
    padded count. Every model is causal, so the outputs at the real tokens do not depend on the
    padding after them. dropout_key (training only): the randomness of S4D's dropout; the other
    families have none, and without a key every model is deterministic (evaluation)."""
    kwargs = {"dropout_key": dropout_key} if self.variant == "s4d" else {}
    if self.variant == "mamba_length_adaptive" and n_points is not None:
      kwargs["sequence_length"] = 2 * jnp.asarray(n_points, jnp.float32)
    result = self.backbone(prompt, return_residuals=return_residuals, **kwargs)
    if return_residuals:
      return _channel(result[0]), result[1]
    return _channel(result)

  def read_out_residual(self, residual):
    """A residual stream through the final norm and read-out: what that layer would predict."""
    return _channel(self.backbone.read_out_residual(residual))


def _channel(outputs):
  return outputs[..., 0].astype(jnp.float32)
