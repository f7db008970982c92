"""The study's configs: `--config=experiments/studies/icl/configs/NAME.py`."""
