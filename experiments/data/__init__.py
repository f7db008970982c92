"""Data every study shares: TFDS builders read without TensorFlow, image sources, batches."""

from experiments.data.evaluation import evaluation_batches
from experiments.data.iterator import StepBatches, batches
from experiments.data.prepared import find_prepared, open_prepared
from experiments.data.sources import DEFAULT_IMAGE_SIZE, ImageSource, image_source
from experiments.data.splits import open_split

__all__ = [
  "DEFAULT_IMAGE_SIZE",
  "ImageSource",
  "StepBatches",
  "batches",
  "evaluation_batches",
  "find_prepared",
  "image_source",
  "open_prepared",
  "open_split",
]
