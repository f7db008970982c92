"""`import mamba_jax`: the public names, and the one-way dependency on `kernels` only."""

import pathlib
import re
import subprocess
import sys

import mamba_jax
from kernels.selective_scan import selective_scan


def test_public_names():
  assert mamba_jax.selective_scan is selective_scan
  for name in (
    "MambaConfig",
    "MambaBlock",
    "ResidualBlock",
    "MambaModel",
    "MambaLM",
    "init_cache",
    "prefill",
    "step",
    "generate",
    "weight_decay_mask",
    "stack_layers",
    "unstack_layers",
  ):
    assert name in mamba_jax.__all__ and hasattr(mamba_jax, name), name


def test_library_never_imports_experiments():
  root = pathlib.Path(mamba_jax.__file__).parent
  for path in root.rglob("*.py"):
    source = path.read_text()
    assert not re.search(r"^\s*(from|import)\s+experiments\b", source, re.M), path


def test_library_import_never_touches_torch_or_pip():
  """Importing every module of the package (in a fresh interpreter) loads neither torch nor pip:
  the benchmarks and their torch peer live in `benchmarks/`, outside the library."""
  script = (
    "import importlib, pkgutil, sys, mamba_jax\n"
    "for module in pkgutil.walk_packages(mamba_jax.__path__, 'mamba_jax.'):\n"
    "  importlib.import_module(module.name)\n"
    "print(sorted(name for name in ('torch', 'pip', 'mambapy') if name in sys.modules))"
  )
  root = pathlib.Path(mamba_jax.__file__).parents[1]
  result = subprocess.run(
    [sys.executable, "-c", script], capture_output=True, text=True, cwd=root, check=True
  )
  assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
  modules = {path.stem for path in pathlib.Path(mamba_jax.__file__).parent.rglob("*.py")}
  assert not modules & {"bench", "peer_mambapy"}
