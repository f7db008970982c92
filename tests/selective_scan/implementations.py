"""Every fast implementation the op offers on this machine, as pytest parameters
(implementation, options).

The Pallas kernels always run in interpret mode (both variants), at the kernels' default block
sizes and a chunk of 8 steps, so that sequences span several chunks; on a GPU or TPU the native
kernel for that platform is added, so the same tests check the compiled kernel there.
"""

import jax
import pytest

from mamba_jax_kernels.selective_scan import PallasOptions, XlaOptions

FAST = [
  pytest.param("xla", XlaOptions(chunk_size=8, strategy="sequential"), id="xla-sequential"),
  pytest.param("xla", XlaOptions(chunk_size=8, strategy="associative"), id="xla-associative"),
  pytest.param(
    "pallas", PallasOptions(interpret=True, backend="tpu", chunk_size=8), id="pallas-tpu-interpret"
  ),
  pytest.param(
    "pallas", PallasOptions(interpret=True, backend="gpu", chunk_size=8), id="pallas-gpu-interpret"
  ),
]
if jax.default_backend() in ("gpu", "tpu"):
  FAST.append(pytest.param("pallas", PallasOptions(), id=f"pallas-native-{jax.default_backend()}"))
