"""`MambaConfig`: every knob of the Mamba models in one frozen, validated dataclass.

Defaults are mamba_ssm's (docs/design.md section 3.1). Validation happens at construction so
that a bad value fails where it was written, with the field's name in the message, not deep
inside a trace.
"""

import dataclasses
import math
from typing import Any

import jax.numpy as jnp

from mamba_jax_kernels.selective_scan import IMPLEMENTATIONS

DISCRETIZATIONS = ("fixed", "length_adaptive")
SCAN_LAYERS_FROM = 8  # scan_layers=None stacks and scans the layers from this depth on


@dataclasses.dataclass(frozen=True)
class MambaConfig:
  """Architecture, initialisation, discretisation and precision of a Mamba stack.

  d_model, n_layers: width of the residual stream and number of residual blocks.
  d_state, d_conv, expand: SSM state size, causal conv kernel width (0: no conv at all, as in
    the image-reconstruction paper's Mamba; the SSM reads silu(x) directly), d_inner = expand *
    d_model.
  dt_rank: rank of the step projection; "auto" means ceil(d_model / 16).
  dt_min, dt_max, dt_init_floor, dt_scale: initial step sizes (log-uniform in [dt_min, dt_max],
    floored at dt_init_floor) and the scale of the dt_proj weight init.
  conv_bias, bias: bias of the causal conv; bias of in_proj and out_proj.
  rms_norm_eps, residual_in_fp32: RMSNorm epsilon; keep the residual stream in float32.
  vocab_size, pad_vocab_size_multiple, tie_embeddings: token models only (None for continuous ones).
  initializer_range: std of the token embedding. rescale_prenorm_residual: scale out_proj's init by
    1/sqrt(n_layers) as mamba_ssm's `_init_weights`.
  discretization: "fixed" or "length_adaptive" (docs/design.md section 4); length_ref is L_ref,
    required for "length_adaptive".
  scan_implementation, scan_interpret, scan_chunk_size: passed to `selective_scan` as its
    implementation and that implementation's options (chunk size: "xla" or "pallas"; interpret:
    "pallas"); a setting the implementation has no option for raises when the block is built.
  remat: recompute each residual block in the backward pass instead of storing its
    activations (jax.checkpoint per layer): memory for about one more forward pass.
  scan_layers: the layers' layout. True: one stacked copy of the block's parameters (leading
    n_layers axis) run under `nnx.scan`, so the compiled program holds one layer whatever the
    depth; False: a list of blocks run by a Python loop. None (default): True from
    SCAN_LAYERS_FROM layers on. Same parameters give the same outputs either way, but a
    checkpoint restores only under the layout it was saved with (see `stack_layers`).
  dtype, param_dtype: compute dtype and parameter storage dtype (A_log, D, dt bias and the
    length-adaptive exponent are float32 whatever param_dtype says).
  """

  d_model: int
  n_layers: int
  d_state: int = 16
  d_conv: int = 4
  expand: int = 2
  dt_rank: int | str = "auto"
  dt_min: float = 1e-3
  dt_max: float = 0.1
  dt_init_floor: float = 1e-4
  dt_scale: float = 1.0
  conv_bias: bool = True
  bias: bool = False
  rms_norm_eps: float = 1e-5
  residual_in_fp32: bool = True
  tie_embeddings: bool = True
  vocab_size: int | None = None
  pad_vocab_size_multiple: int = 8
  initializer_range: float = 0.02
  rescale_prenorm_residual: bool = True
  discretization: str = "fixed"
  length_ref: float | None = None
  scan_implementation: str = "auto"
  scan_interpret: bool = False
  scan_chunk_size: int | None = None
  remat: bool = False
  scan_layers: bool | None = None
  dtype: Any = jnp.float32  # a floating dtype-like; stored as a jnp.dtype
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    for name in ("d_model", "n_layers", "d_state", "expand", "pad_vocab_size_multiple"):
      _require(
        name,
        _is_int(getattr(self, name)) and getattr(self, name) >= 1,
        getattr(self, name),
        "a positive integer",
      )
    _require(
      "d_conv",
      _is_int(self.d_conv) and self.d_conv >= 0,
      self.d_conv,
      "a non-negative integer (0: no conv)",
    )
    _require(
      "dt_rank",
      self.dt_rank == "auto"
      or (isinstance(self.dt_rank, int) and _is_int(self.dt_rank) and self.dt_rank >= 1),
      self.dt_rank,
      '"auto" or a positive integer',
    )
    for name in (
      "dt_min",
      "dt_max",
      "dt_init_floor",
      "dt_scale",
      "rms_norm_eps",
      "initializer_range",
    ):
      value = getattr(self, name)
      _require(name, _is_number(value) and value > 0, value, "a positive number")
    _require("dt_max", self.dt_max >= self.dt_min, self.dt_max, f"dt_max >= dt_min = {self.dt_min}")
    _require(
      "vocab_size",
      self.vocab_size is None or (_is_int(self.vocab_size) and self.vocab_size >= 1),
      self.vocab_size,
      "None or a positive integer",
    )
    _require(
      "discretization",
      self.discretization in DISCRETIZATIONS,
      self.discretization,
      f"one of {DISCRETIZATIONS}",
    )
    if self.discretization == "length_adaptive":
      _require(
        "length_ref",
        _is_number(self.length_ref) and self.length_ref is not None and self.length_ref > 0,
        self.length_ref,
        'a positive number when discretization="length_adaptive"',
      )
    elif self.length_ref is not None:
      _require(
        "length_ref",
        _is_number(self.length_ref) and self.length_ref > 0,
        self.length_ref,
        "None or a positive number",
      )
    _require(
      "scan_implementation",
      self.scan_implementation in IMPLEMENTATIONS,
      self.scan_implementation,
      f"one of {IMPLEMENTATIONS}",
    )
    _require(
      "scan_chunk_size",
      self.scan_chunk_size is None or (_is_int(self.scan_chunk_size) and self.scan_chunk_size >= 1),
      self.scan_chunk_size,
      "None or a positive integer",
    )
    for name in (
      "conv_bias",
      "bias",
      "residual_in_fp32",
      "tie_embeddings",
      "rescale_prenorm_residual",
      "scan_interpret",
      "remat",
    ):
      _require(name, isinstance(getattr(self, name), bool), getattr(self, name), "a bool")
    _require(
      "scan_layers",
      self.scan_layers is None or isinstance(self.scan_layers, bool),
      self.scan_layers,
      "None (automatic) or a bool",
    )
    for name in ("dtype", "param_dtype"):
      object.__setattr__(self, name, _float_dtype(name, getattr(self, name)))

  @property
  def d_inner(self) -> int:
    return self.expand * self.d_model

  @property
  def resolved_scan_layers(self) -> bool:
    """Whether the layers are stacked and scanned: scan_layers, or by depth when None."""
    return self.n_layers >= SCAN_LAYERS_FROM if self.scan_layers is None else self.scan_layers

  @property
  def resolved_dt_rank(self) -> int:
    return math.ceil(self.d_model / 16) if isinstance(self.dt_rank, str) else self.dt_rank

  @property
  def padded_vocab_size(self) -> int | None:
    """vocab_size rounded up to a multiple of pad_vocab_size_multiple (mamba_ssm does this)."""
    if self.vocab_size is None:
      return None
    multiple = self.pad_vocab_size_multiple
    return -(-self.vocab_size // multiple) * multiple


def _is_int(value):
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(name, condition, value, expected):
  if not condition:
    raise ValueError(f"MambaConfig.{name} = {value!r}; expected {expected}")


def _float_dtype(name, value):
  try:
    dtype = jnp.dtype(value)
  except TypeError:
    dtype = None
  _require(
    name,
    dtype is not None and jnp.issubdtype(dtype, jnp.floating),
    value,
    "a floating dtype such as float32 or bfloat16",
  )
  return dtype
