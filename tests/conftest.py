"""Shared pytest setup: tests run on CPU unless an accelerator is present; nothing reaches the
network."""

import os

os.environ.setdefault("TFDS_DATA_DIR", os.path.join(os.path.dirname(__file__), ".no_tfds_data"))
