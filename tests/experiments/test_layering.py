"""The experiments tree's one-way dependencies: a study never imports another study, shared
modules never import a study, and nothing below experiments/ imports it back."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STUDIES = ROOT / "experiments" / "studies"


def _imports(path):
  """Every module name a file imports (absolute imports; the project uses no relative ones)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      assert node.level == 0, f"{path}: relative import"
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


def _study_of(module):
  parts = module.split(".")
  return parts[2] if parts[:2] == ["experiments", "studies"] and len(parts) > 2 else None


def test_the_three_studies_are_packages():
  assert sorted(p.name for p in STUDIES.iterdir() if (p / "__init__.py").exists()) == [
    "icl",
    "length_generalisation",
    "tradeoff",
  ]


@pytest.mark.parametrize("study", ["icl", "length_generalisation", "tradeoff"])
def test_no_study_imports_another(study):
  for path in (STUDIES / study).rglob("*.py"):
    others = {_study_of(m) for m in _imports(path)} - {None, study}
    assert not others, f"{path.relative_to(ROOT)} imports study {sorted(others)}"


def test_shared_modules_import_no_study():
  shared = [p for p in (ROOT / "experiments").rglob("*.py") if STUDIES not in p.parents]
  for path in shared:
    if path == STUDIES / "__init__.py":
      continue
    studies = {_study_of(m) for m in _imports(path)} - {None}
    assert not studies, f"{path.relative_to(ROOT)} imports study {sorted(studies)}"


@pytest.mark.parametrize("package", ["mamba_jax", "kernels"])
def test_library_packages_never_import_experiments(package):
  for path in (ROOT / package).rglob("*.py"):
    bad = {m for m in _imports(path) if m.split(".")[0] in ("experiments", "benchmarks")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_kernels_never_import_mamba_jax():
  for path in (ROOT / "kernels").rglob("*.py"):
    assert not {m for m in _imports(path) if m.split(".")[0] == "mamba_jax"}, path
