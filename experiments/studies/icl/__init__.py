"""Study B: in-context learning of function classes, Mamba against transformers (Grazzi et al.
2024, built on Garg et al. 2022)."""
