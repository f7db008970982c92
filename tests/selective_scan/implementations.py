"""Every fast implementation the op offers on this machine, as pytest parameters.

The Pallas kernels always run in interpret mode (both variants); on a GPU or TPU the native
kernel for that platform is added, so the same tests check the compiled kernel there.
"""

import jax
import pytest

FAST = [
    pytest.param("xla", dict(chunk_size=8, xla_strategy="sequential"), id="xla-sequential"),
    pytest.param("xla", dict(chunk_size=8, xla_strategy="associative"), id="xla-associative"),
    pytest.param("pallas", dict(interpret=True, pallas_backend="tpu", chunk_size=8, block_d=8),
                 id="pallas-tpu-interpret"),
    pytest.param("pallas", dict(interpret=True, pallas_backend="gpu", chunk_size=8, block_d=8),
                 id="pallas-gpu-interpret"),
]
if jax.default_backend() in ("gpu", "tpu"):
  FAST.append(pytest.param("pallas", dict(), id=f"pallas-native-{jax.default_backend()}"))
