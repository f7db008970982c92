"""Which examples of a global batch each host reads: the arithmetic every study shares.

Global step s holds the examples [s * B, (s + 1) * B) of a stream; host p of n reads the
contiguous slice [s * B + p * B / n, s * B + (p + 1) * B / n). Randomness is derived from these
global example indices, never from the host, so every host layout sees the same data.
"""

import numpy as np


def host_batch_size(global_batch, process_count, device_count=None):
  """B / n, the examples one host reads per step; ValueError unless B splits evenly over the
  hosts (and over `device_count` devices, when given)."""
  if global_batch <= 0 or process_count <= 0:
    raise ValueError(
      f"global batch ({global_batch}) and process count ({process_count}) must be positive."
    )
  if device_count is not None and global_batch % device_count:
    raise ValueError(
      f"config.batch_size = {global_batch} is not divisible by the number of "
      f"devices, {device_count} ({process_count} host(s)); choose a multiple of "
      f"{device_count}"
    )
  if global_batch % process_count:
    raise ValueError(
      f"Global batch {global_batch} is not divisible by the process count "
      f"{process_count}: each host must read an equal slice."
    )
  return global_batch // process_count


def host_examples(step, global_batch, process_index=0, process_count=1):
  """This host's global example indices at `step` (int64), its slice of [s B, (s + 1) B)."""
  local = host_batch_size(global_batch, process_count)
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is outside [0, {process_count}).")
  first = step * global_batch + process_index * local
  return np.arange(first, first + local, dtype=np.int64)
