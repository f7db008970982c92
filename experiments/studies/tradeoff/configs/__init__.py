"""The study's configs: `--config=experiments/studies/tradeoff/configs/NAME.py`."""
