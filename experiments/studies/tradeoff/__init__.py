"""Study C: the classification/reconstruction trade-off through one latent (Rathjens & Wiskott
2024)."""
