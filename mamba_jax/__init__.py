"""mamba_jax: Mamba selective state-space models in JAX/Flax.

The selective-scan op lives in `kernels` and is re-exported here; the Flax modules follow.
"""

from kernels.selective_scan import selective_scan

__all__ = ["selective_scan"]
