"""Opening a split of a config's image data set, safely on many hosts."""

import jax
from jax.experimental import multihost_utils

from experiments.data.sources import image_source


def open_split(config, split):
  """The `split` of config.data's image set (config.data.channels, default 1: grayscale); with
  several processes, process 0 prepares it first (TFDS's preparation is not safe to run
  concurrently into one data_dir)."""
  kwargs = dict(
    data_dir=config.data.data_dir or None,
    omniglot_dir=config.data.omniglot_dir or None,
    image_size=config.data.image_size,
    channels=config.data.get("channels", 1),
  )
  if jax.process_count() > 1:
    if jax.process_index() == 0:
      image_source(config.data.name, split, **kwargs)
    multihost_utils.sync_global_devices(f"prepared {config.data.name}")
  return image_source(config.data.name, split, **kwargs)
