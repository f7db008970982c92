"""Training jobs that reproduce the three studies (DESIGN.md section 6)."""
