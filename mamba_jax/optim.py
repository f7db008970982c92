"""Which parameters take weight decay: a mask for optax.adamw(mask=...) / add_decayed_weights.

Rule (the GPT-2/GPT-3 recipe mamba_ssm's models were trained with, plus mamba_ssm's own
`_no_weight_decay` flags): weight matrices decay, including the token embedding (hence the tied
head) and the depthwise conv weight; vectors never do (every bias, RMSNorm/LayerNorm scales, D,
dt_bias, the length-adaptive alpha, S4D's log step); and the SSM matrices A_log (and S4D's input
matrix ssm_B and the imaginary part A_imag of S4D-Lin's A) never do, because decay would pull
the state dynamics rather than regularise a map.
Under a stacked MambaStack (MambaConfig.scan_layers) every parameter has one more leading axis,
the layer axis, which does not count towards its rank.
"""

import jax

from mamba_jax.models import STACKED_LAYERS

# Matrices that must not decay (leaf names); every parameter of rank < 2 is excluded anyway.
NO_DECAY_MATRICES = frozenset({"A_log", "A_imag", "ssm_B"})


def weight_decay_mask(params):
  """Pytree of bools with the structure of `params` (e.g. nnx.state(model, nnx.Param), pure or
  not): True where the parameter takes weight decay."""

  def decays(path, leaf):
    return parameter_rank(path, leaf) >= 2 and _leaf_name(path) not in NO_DECAY_MATRICES

  return jax.tree_util.tree_map_with_path(decays, params)


def is_stacked(path):
  """Whether the parameter at `path` (a jax key path) lives in a stacked MambaStack, i.e. its
  leading axis is the layer axis."""
  return STACKED_LAYERS in _names(path)


def parameter_rank(path, leaf):
  """The rank of one layer's parameter: leaf.ndim, less the layer axis of a stacked layout."""
  return getattr(leaf, "ndim", 0) - (1 if is_stacked(path) else 0)


def _names(path):
  return [getattr(key, "key", getattr(key, "name", None)) for key in path]


def _leaf_name(path):
  for key in reversed(path):
    name = getattr(key, "key", getattr(key, "name", None))
    if isinstance(name, str) and name != "value":
      return name
  return None
