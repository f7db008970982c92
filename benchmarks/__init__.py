"""Benchmarks of the models, run from a checkout (`python -m benchmarks.model_bench`).

Outside the `mamba_jax` package on purpose: the peer comparison needs torch and pip, which a
library import must never touch, and the wheel ships only `mamba_jax` and `mamba_jax_kernels`.
"""
