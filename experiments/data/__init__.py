"""Data for the experiments: TFDS builders read without TensorFlow, sources, batches, sequences."""

from experiments.data.image_patches import draw_context_length, patch_sequences
from experiments.data.iterator import batches, local_batch_size
from experiments.data.prepared import find_prepared, open_prepared
from experiments.data.sources import DEFAULT_IMAGE_SIZE, ImageSource, image_source

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "ImageSource",
    "batches",
    "draw_context_length",
    "find_prepared",
    "image_source",
    "local_batch_size",
    "open_prepared",
    "patch_sequences",
]
