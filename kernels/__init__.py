"""Custom ops for mamba_jax. Imports nothing from mamba_jax or experiments.

The op itself: `from kernels.selective_scan import selective_scan` (also `mamba_jax.selective_scan`).
"""
