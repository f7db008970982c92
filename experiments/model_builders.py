"""One way to build a model from a config section, for every study.

A study's config holds one section per model family (config.model.mamba, .transformer, .s4d).
Each builder passes every field of the section that the model takes, so a field added to a
section (remat, d_conv, ...) reaches every study's model alike. Study-level fields of a section
(a per-family learning rate, a pooling choice) are named in `ignore`; any other field the model
does not know raises, naming it, so a typo never silently falls back to a default.
"""

import dataclasses
import inspect

import mamba_jax
from mamba_jax.baselines.s4d import S4DModel
from mamba_jax.baselines.transformer import CausalTransformer

# Arguments the builders own; a section may not set them.
_RESERVED = ("in_features", "out_features", "rngs", "self")


def _arguments(section, accepted, where, ignore, overrides):
  fields = dict(section.items())
  unknown = sorted(set(fields) - set(accepted) - set(ignore))
  if unknown:
    raise ValueError(
      f"{where}: unknown field(s) {unknown}; the model takes {sorted(accepted)}"
      + (f" (the study reads {sorted(ignore)} itself)" if ignore else "")
    )
  arguments = {key: value for key, value in fields.items() if key in accepted}
  arguments.update(overrides)
  return arguments


def mamba_config(section, *, where="config.model.mamba", ignore=(), **overrides):
  """The MambaConfig of a config section: every MambaConfig field it sets, then `overrides`."""
  accepted = [f.name for f in dataclasses.fields(mamba_jax.MambaConfig)]
  return mamba_jax.MambaConfig(**_arguments(section, accepted, where, ignore, overrides))


def _keywords(constructor):
  return [
    name
    for name, p in inspect.signature(constructor).parameters.items()
    if p.kind is p.KEYWORD_ONLY and name not in _RESERVED
  ]


def causal_transformer(
  section,
  in_features,
  out_features,
  *,
  rngs,
  where="config.model.transformer",
  ignore=(),
  **overrides,
):
  """mamba_jax's CausalTransformer baseline from a config section."""
  kwargs = _arguments(section, _keywords(CausalTransformer.__init__), where, ignore, overrides)
  return CausalTransformer(in_features, out_features, rngs=rngs, **kwargs)


def s4d_model(
  section, in_features, out_features, *, rngs, where="config.model.s4d", ignore=(), **overrides
):
  """mamba_jax's S4D baseline from a config section."""
  kwargs = _arguments(section, _keywords(S4DModel.__init__), where, ignore, overrides)
  return S4DModel(in_features, out_features, rngs=rngs, **kwargs)
