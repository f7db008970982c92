"""Custom ops for mamba_jax. Imports nothing from mamba_jax or experiments."""

from kernels.selective_scan import selective_scan

__all__ = ["selective_scan"]
