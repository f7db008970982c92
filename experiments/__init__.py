"""Training jobs that reproduce the three studies (docs/design.md section 6), one package each
under `experiments/studies/`, on a shared training loop (train.py)."""
