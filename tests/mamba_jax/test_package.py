"""`import mamba_jax`: the public names, and the one-way dependency on `kernels` only."""

import pathlib
import re

import mamba_jax
from kernels.selective_scan import selective_scan


def test_public_names():
  assert mamba_jax.selective_scan is selective_scan
  for name in ("MambaConfig", "MambaBlock", "ResidualBlock", "MambaModel", "MambaLM",
               "init_cache", "prefill", "step", "generate", "weight_decay_mask"):
    assert name in mamba_jax.__all__ and hasattr(mamba_jax, name), name


def test_library_never_imports_experiments():
  root = pathlib.Path(mamba_jax.__file__).parent
  for path in root.rglob("*.py"):
    source = path.read_text()
    assert not re.search(r"^\s*(from|import)\s+experiments\b", source, re.M), path
