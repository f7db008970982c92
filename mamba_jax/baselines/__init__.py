"""Baselines with the Mamba models' interface: model(inputs, lengths=None) -> outputs."""

from mamba_jax.baselines.s4d import S4DModel
from mamba_jax.baselines.transformer import CausalTransformer

__all__ = ["CausalTransformer", "S4DModel"]
