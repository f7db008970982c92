"""`import mamba_jax`: the public names, the one-way dependency on the op (`mamba_jax_kernels`)
only, and no code that imports the op by its checkout folder's name `kernels`."""

import ast
import pathlib
import re
import subprocess
import sys

import mamba_jax
from mamba_jax_kernels.selective_scan import selective_scan


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


ROOT = pathlib.Path(__file__).resolve().parents[2]
# Where the project's code and commands live; the checkout's venvs and outputs are not searched.
SOURCES = ("kernels", "mamba_jax", "experiments", "benchmarks", "tests")
DOCS = ("README.md", "BUILD_NOTES.md", "Makefile", "docs/design.md")


def _imported_modules(path):
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      yield node.module


def test_nothing_imports_the_op_as_kernels():
  """The op installs as `mamba_jax_kernels` (pyproject's package-dir; the folder stays `kernels/`),
  so `kernels` is PyPI's package. From a checkout `import kernels` would still find the folder and
  load a second copy of every module of the op: no code or command may use that name."""
  stray = []
  for path in [p for name in SOURCES for p in (ROOT / name).rglob("*.py")]:
    modules = list(_imported_modules(path))
    stray += [(path, m) for m in modules if m == "kernels" or m.startswith("kernels.")]
    source = path.read_text()
    stray += [(path, m) for m in re.findall(r"""["'](?:-m )?kernels\.\w+""", source)]
  for path in (ROOT / name for name in DOCS):
    text = path.read_text()
    stray += [(path, m) for m in re.findall(r"(?:-m|from|import) kernels\b[.\w]*", text)]
  assert not stray, stray
