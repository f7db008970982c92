"""The options of each selective-scan implementation: one frozen dataclass per implementation.

An options object says how an implementation runs, never what it computes: every
implementation gives the same results within the tolerances of docs/design.md. `reference`
takes no options. A field left at None means "the implementation's default for this shape and
platform". Values are checked at construction, so a bad one fails where it was written.
"""

import dataclasses

XLA_STRATEGIES = ("sequential", "associative")
PALLAS_BACKENDS = ("tpu", "gpu")


@dataclasses.dataclass(frozen=True)
class XlaOptions:
  """Options of the chunked pure-JAX implementation (`xla.py`).

  chunk_size: time steps per chunk; None picks the largest power of two whose chunk of states
    fits the cache budget (`xla.default_chunk_size`).
  strategy: the in-chunk scan, "sequential" or "associative"; None picks the faster for the
    platform (`xla.default_strategy`).
  """

  chunk_size: int | None = None
  strategy: str | None = None

  def __post_init__(self):
    _check_positive(self, "chunk_size")
    _check_choice(self, "strategy", XLA_STRATEGIES)


@dataclasses.dataclass(frozen=True)
class PallasOptions:
  """Options of the Pallas kernels (`pallas_op.py`).

  chunk_size: time steps per chunk; block_d: channels per program; None picks the kernel's
    default for the shape and backend.
  interpret: run the kernel in Pallas interpret mode (any platform, CPU included).
  backend: "tpu" (Mosaic) or "gpu" (Triton) kernel variant; None follows the platform (the TPU
    variant everywhere but on a GPU).
  num_warps, num_stages: Triton launch settings of the GPU variant; None picks them per shape.
  """

  chunk_size: int | None = None
  block_d: int | None = None
  interpret: bool = False
  backend: str | None = None
  num_warps: int | None = None
  num_stages: int | None = None

  def __post_init__(self):
    for name in ("chunk_size", "block_d", "num_warps", "num_stages"):
      _check_positive(self, name)
    _check_choice(self, "backend", PALLAS_BACKENDS)
    if not isinstance(self.interpret, bool):
      raise ValueError(f"PallasOptions.interpret = {self.interpret!r}; expected a bool")
    if self.backend == "tpu" and (self.num_warps is not None or self.num_stages is not None):
      raise ValueError(
        "PallasOptions: num_warps and num_stages are launch settings of the GPU "
        "(Triton) kernel; they cannot be combined with backend='tpu'"
      )


# What `selective_scan(options=...)` takes: the options of the named implementation, or None.
Options = XlaOptions | PallasOptions | None


def _check_positive(options, name):
  value = getattr(options, name)
  if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
    raise ValueError(
      f"{type(options).__name__}.{name} = {value!r}; expected None or a positive integer"
    )


def _check_choice(options, name, choices):
  value = getattr(options, name)
  if value is not None and value not in choices:
    raise ValueError(
      f"{type(options).__name__}.{name} = {value!r}; expected None or one of {choices}"
    )
