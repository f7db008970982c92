"""mamba_jax: Mamba selective state-space models in JAX/Flax.

The selective-scan op lives in `kernels` and is re-exported here; the Flax NNX modules, streaming
decode and the optimiser helper follow. Baselines (causal transformer, S4D) are in
`mamba_jax.baselines`.
"""

from mamba_jax.block import LayerCache, MambaBlock, ResidualBlock
from mamba_jax.checkpoints import load_pretrained, save_pretrained
from mamba_jax.config import MambaConfig
from mamba_jax.decode import DecodeCache, generate, init_cache, prefill, step
from mamba_jax.discretization import Discretization
from mamba_jax.layers import CausalConv1d, RMSNorm
from mamba_jax.models import (
  MambaLM,
  MambaModel,
  MambaStack,
  count_parameters,
  stack_layers,
  unstack_layers,
)
from mamba_jax.optim import weight_decay_mask
from mamba_jax_kernels.selective_scan import selective_scan, selective_scan_step

__all__ = [
  "CausalConv1d",
  "DecodeCache",
  "Discretization",
  "LayerCache",
  "MambaBlock",
  "MambaConfig",
  "MambaLM",
  "MambaModel",
  "MambaStack",
  "RMSNorm",
  "ResidualBlock",
  "count_parameters",
  "generate",
  "init_cache",
  "prefill",
  "selective_scan",
  "selective_scan_step",
  "step",
  "weight_decay_mask",
  "stack_layers",
  "unstack_layers",
  "load_pretrained",
  "save_pretrained",
]
