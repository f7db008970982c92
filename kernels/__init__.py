"""Custom ops for mamba_jax. Imports nothing from mamba_jax or experiments.

The op itself: `from kernels.selective_scan import selective_scan, selective_scan_step` (also
`mamba_jax.selective_scan` and `mamba_jax.selective_scan_step`). On new hardware, check it first:
`python -m kernels.selective_scan.check`.
"""
