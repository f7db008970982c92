"""Custom ops for mamba_jax. Imports nothing from mamba_jax or experiments.

The op itself: `from mamba_jax_kernels.selective_scan import selective_scan, selective_scan_step`
(also `mamba_jax.selective_scan` and `mamba_jax.selective_scan_step`). On new hardware, check it
first: `python -m mamba_jax_kernels.selective_scan.check`.

This folder is `kernels/` in the checkout and installs as the package `mamba_jax_kernels`
(pyproject.toml's `package-dir`), beside PyPI's `kernels` package; import it by that name only.
"""
