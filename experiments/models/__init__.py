"""Study-specific models built from mamba_jax's backbones."""
