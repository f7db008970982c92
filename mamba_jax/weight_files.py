"""Checkpoint weight files read one tensor at a time, so that a load holds about one copy.

`open_weights` gives a `WeightFiles`: every tensor's shape and dtype up front (from the
safetensors headers, or the torch state dict) and `take(key)`, which reads one tensor and
forgets it. safetensors files are parsed here (the format is an 8-byte header length, a JSON
header of dtypes, shapes and byte offsets, then the bytes), not memory-mapped: mapped pages that
were read stay resident until the file is closed, which would double a load's peak memory. torch
files are memory-mapped (torch.load(mmap=True)), since torch reads nothing lazily otherwise, and
each tensor's pages are dropped once it is copied out. A damaged file of any kind raises a
ValueError that names it and says what is wrong.
"""

import ctypes
import json
import math
import mmap
import pathlib
import pickle
import re
import sys

import jax.numpy as jnp
import ml_dtypes
import numpy as np

INTEROP_EXTRA = "pip install 'mamba-jax[interop]'"
_SAFETENSORS_DTYPES = {
  "F64": np.float64,
  "F32": np.float32,
  "F16": np.float16,
  "BF16": jnp.bfloat16,
  "F8_E4M3": ml_dtypes.float8_e4m3fn,
  "F8_E5M2": ml_dtypes.float8_e5m2,
  "I64": np.int64,
  "I32": np.int32,
  "I16": np.int16,
  "I8": np.int8,
  "U64": np.uint64,
  "U32": np.uint32,
  "U16": np.uint16,
  "U8": np.uint8,
  "BOOL": np.bool_,
}
_MAX_HEADER = 100_000_000  # safetensors' own limit


class WeightFiles:
  """{name: (shape, dtype)} of every tensor in `specs`; `read(name)` reads one as a numpy
  array in the file's layout and dtype, and `take(name)` reads it for the last time."""

  def __init__(self, source, specs, readers):
    self.source, self.specs, self._readers = source, specs, readers

  def read(self, key):
    return self._readers[key]()

  def take(self, key):
    array = self._readers[key](forget=True)
    del self._readers[key]
    return array

  def drop(self, key):
    """Forgets `key` unread (a torch state dict lets go of its tensor)."""
    del self.specs[key]
    self._readers.pop(key)(forget=True)

  def rename(self, old, new):
    self.specs[new], self._readers[new] = self.specs.pop(old), self._readers.pop(old)

  def close(self):
    self._readers.clear()


def open_weights(weights_file, index=None):
  """WeightFiles of a .safetensors or torch file, or of the shards an index.json lists."""
  if index is not None:
    return _open_sharded(weights_file, index)
  if weights_file.name.endswith(".safetensors"):
    specs, readers = _open_safetensors(weights_file)
  else:
    specs, readers = _open_torch(weights_file)
  return WeightFiles(str(weights_file), specs, readers)


def read_json_object(path, what="a JSON object"):
  """The dict in the JSON file `path` (ValueError naming the file for anything else)."""
  try:
    value = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise ValueError(f"load_pretrained: '{path}' is not valid JSON: {error}") from None
  if not isinstance(value, dict):
    raise ValueError(
      f"load_pretrained: '{path}' holds a JSON {type(value).__name__}; expected {what}"
    )
  return value


def _open_sharded(index_file, index):
  weight_map = index.get("weight_map")
  if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
    raise ValueError(
      f"load_pretrained: '{index_file}' has no weight_map object of tensor names to shard files"
    )
  specs, readers = {}, {}
  for shard in sorted(set(weight_map.values())):
    shard_file = index_file.parent / shard
    if pathlib.PurePath(shard).name != shard or not shard_file.is_file():
      names = sorted(key for key, value in weight_map.items() if value == shard)
      raise ValueError(
        f"load_pretrained: missing file '{shard_file}' (listed in "
        f"'{index_file.name}', holds {names[:4]}{'...' if len(names) > 4 else ''})"
      )
    opened = (
      _open_safetensors(shard_file) if shard.endswith(".safetensors") else _open_torch(shard_file)
    )
    specs.update(opened[0])
    readers.update(opened[1])
  missing = sorted(set(weight_map) - set(specs))
  if missing:
    raise ValueError(f"load_pretrained: '{index_file}' lists tensors its shards lack: {missing}")
  return WeightFiles(str(index_file), specs, readers)


def _open_safetensors(path):
  def damaged(problem):
    return ValueError(f"load_pretrained: '{path}' is not a readable safetensors file: {problem}")

  size = path.stat().st_size
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) < 8:
      raise damaged(f"{size} bytes, shorter than the 8-byte header length (truncated?)")
    length = int.from_bytes(head, "little")
    if length > min(size - 8, _MAX_HEADER):
      raise damaged(f"header length {length} exceeds the file's {size} bytes (truncated?)")
    try:
      header = json.loads(f.read(length))
    except (json.JSONDecodeError, UnicodeDecodeError):
      raise damaged("its header is not JSON (damaged, or not a safetensors file)") from None
  if not isinstance(header, dict):
    raise damaged("its header is not a JSON object")
  start = 8 + length
  specs, readers = {}, {}
  for key, entry in header.items():
    if key == "__metadata__":
      continue
    try:
      dtype = np.dtype(_SAFETENSORS_DTYPES[entry["dtype"]])
      shape = tuple(int(n) for n in entry["shape"])
      begin, end = (int(n) for n in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
      raise damaged(f"tensor '{key}' has a header entry safetensors does not define") from None
    if min(shape, default=0) < 0 or end - begin != math.prod(shape) * dtype.itemsize or begin < 0:
      raise damaged(f"tensor '{key}': shape {shape} does not fit its byte range {begin}..{end}")
    if start + end > size:
      raise damaged(f"tensor '{key}' ends at byte {start + end} of {size} (truncated?)")
    specs[key] = (shape, dtype)
    readers[key] = _file_reader(path, start + begin, shape, dtype)
  return specs, readers


def _file_reader(path, offset, shape, dtype):
  def read(forget=False):
    del forget  # nothing is kept between reads
    array = np.empty(shape, dtype)
    with open(path, "rb") as f:
      f.seek(offset)
      count = f.readinto(array.reshape(-1).view(np.uint8).data)
    if count != array.nbytes:
      raise ValueError(f"load_pretrained: '{path}' ended while reading a tensor (truncated?)")
    return array

  return read


def _open_torch(path):
  torch = import_torch(f"read '{path}'")
  mapped = _RELEASE is not None
  try:
    try:  # mapped: no copy of the file in memory, and each tensor's pages let go once read
      state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mapped)
    except RuntimeError as error:
      if not mapped or "mmap" not in str(error):
        raise
      mapped = False  # torch's legacy (non-zip) format cannot be mapped: read it whole
      state = torch.load(str(path), map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as error:
    reason = re.search(r"(Unsupported (global|operand)[^\n]*)", str(error))
    raise ValueError(
      f"load_pretrained: '{path}' is damaged or holds more than tensors: torch.load with "
      f"weights_only=True refuses it ({reason.group(1) if reason else 'not a tensor pickle'}). "
      "mamba_jax never unpickles other objects, since that can run any code; a checkpoint's "
      "state dict holds tensors only"
    ) from None
  except (RuntimeError, EOFError, OSError) as error:
    raise ValueError(
      f"load_pretrained: '{path}' is not a readable torch file (truncated or damaged?): "
      f"{str(error).splitlines()[0] if str(error) else type(error).__name__}"
    ) from None
  if not isinstance(state, dict):
    raise ValueError(f"load_pretrained: '{path}' holds a {type(state).__name__}, not a state dict")
  specs, readers = {}, {}
  for key, value in state.items():
    if not isinstance(value, torch.Tensor):
      raise ValueError(
        f"load_pretrained: '{path}' entry '{key}' is a {type(value).__name__}, not a tensor"
      )
    specs[key] = (tuple(value.shape), _numpy_dtype(torch, value.dtype))
    readers[key] = _torch_reader(torch, state, key, mapped)
  return specs, readers


def _torch_reader(torch, state, key, mapped):
  def read(forget=False):
    value = (state.pop(key) if forget else state[key]).detach().cpu()
    if value.dtype == torch.bfloat16:  # numpy has no bfloat16: the same bits, viewed
      array = value.view(torch.int16).numpy().view(jnp.bfloat16)
    else:
      array = value.numpy()
    if not (forget and mapped):
      return array
    array = array.copy()
    storage = value.untyped_storage()  # all of it: pages are whole, and refetched if touched
    _release_pages(storage.data_ptr(), storage.nbytes())
    return array

  return read


def _load_madvise():
  """libc's madvise where pages of a file mapping can be dropped (Linux), else None."""
  if not sys.platform.startswith("linux"):
    return None
  try:
    return ctypes.CDLL(None, use_errno=True).madvise
  except (OSError, AttributeError):
    return None


_RELEASE = _load_madvise()
_MADV_DONTNEED = 4


def _release_pages(pointer, nbytes):
  """Drops the resident pages of a read-only file mapping: they stop counting as this process's
  memory and are read from the file again if touched. Only for torch.load(mmap=True) storages
  (on anonymous memory the same call would zero them)."""
  start = pointer - pointer % mmap.PAGESIZE
  if _RELEASE is not None and nbytes:
    _RELEASE(ctypes.c_void_p(start), ctypes.c_size_t(pointer + nbytes - start), _MADV_DONTNEED)


def _numpy_dtype(torch, dtype):
  if dtype == torch.bfloat16:
    return np.dtype(jnp.bfloat16)
  try:
    return np.dtype(torch.empty((), dtype=dtype).numpy().dtype)
  except TypeError:  # a dtype numpy lacks (float8, complex32, ...): reported as a bad dtype
    return np.dtype(np.void)


def import_torch(purpose):
  try:
    import torch
  except ImportError as error:
    raise ImportError(
      f"to {purpose} torch is needed (pytorch_model.bin files are torch pickles); "
      f"install the interop extra: {INTEROP_EXTRA}, or use safetensors files"
    ) from error
  return torch
