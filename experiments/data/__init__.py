"""Data for the experiments: TFDS builders read without TensorFlow, sources, batches, sequences."""

from experiments.data.icl_tasks import (curriculum_at, icl_batch, make_prompt,
                                        normalised_squared_error, read_predictions)
from experiments.data.image_patches import draw_context_length, patch_sequences
from experiments.data.iterator import StepBatches, batches, local_batch_size
from experiments.data.prepared import find_prepared, open_prepared
from experiments.data.sources import DEFAULT_IMAGE_SIZE, ImageSource, image_source

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "ImageSource",
    "StepBatches",
    "batches",
    "curriculum_at",
    "draw_context_length",
    "find_prepared",
    "icl_batch",
    "image_source",
    "local_batch_size",
    "make_prompt",
    "normalised_squared_error",
    "open_prepared",
    "patch_sequences",
    "read_predictions",
]
