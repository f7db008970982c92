"""The wheel `pip install` builds holds the library (mamba_jax and the op) and nothing else."""

import pathlib
import shutil
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Top-level packages of the checkout; the wheel must take the first two and leave the others.
LIBRARY = ("mamba_jax", "kernels")
CHECKOUT_ONLY = ("experiments", "benchmarks", "tests")


def test_wheel_contains_mamba_jax_and_kernels_only(tmp_path):
  source = tmp_path / "source"  # a copy, so the build writes nothing into the checkout
  source.mkdir()
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, source / name)
  for name in LIBRARY + CHECKOUT_ONLY:
    shutil.copytree(
      ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
  subprocess.run(
    [
      sys.executable,
      "-m",
      "pip",
      "wheel",
      "--no-deps",
      "--no-build-isolation",
      "--no-index",
      "-q",
      "-w",
      str(tmp_path / "dist"),
      str(source),
    ],
    check=True,
  )
  (wheel,) = (tmp_path / "dist").glob("mamba_jax-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  top_level = {
    name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
  }
  assert top_level == set(LIBRARY), top_level
  for package in LIBRARY:
    assert f"{package}/__init__.py" in names
  assert "kernels/selective_scan/__init__.py" in names
  assert "mamba_jax/baselines/__init__.py" in names
