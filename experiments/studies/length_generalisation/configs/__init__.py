"""The study's configs: `--config=experiments/studies/length_generalisation/configs/NAME.py`."""
