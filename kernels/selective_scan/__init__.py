"""The selective-scan op (mamba_ssm's `selective_scan_fn`, channels-last) and its implementations.

Public API: `selective_scan` (the whole sequence; implementation "auto", "reference", "xla" or
"pallas", each with its options object), `selective_scan_step` (one step, for decode),
`softplus` (the op's step-size softplus, for callers that form the step themselves) and the
reference implementation. Where `auto` trusts a fast path: `api.AUTO_TABLE`. Everything else
in this package is an implementation detail.
"""

from mamba_jax_kernels.selective_scan.api import (
  IMPLEMENTATIONS,
  make_options,
  resolve_implementation,
  selective_scan,
)
from mamba_jax_kernels.selective_scan.elementwise import softplus
from mamba_jax_kernels.selective_scan.options import PallasOptions, XlaOptions
from mamba_jax_kernels.selective_scan.reference import selective_scan_reference
from mamba_jax_kernels.selective_scan.step import selective_scan_step

__all__ = [
  "IMPLEMENTATIONS",
  "PallasOptions",
  "XlaOptions",
  "make_options",
  "resolve_implementation",
  "selective_scan",
  "selective_scan_reference",
  "selective_scan_step",
  "softplus",
]
