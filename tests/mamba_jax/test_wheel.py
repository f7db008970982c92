"""The wheel `pip install` builds holds the library (mamba_jax and the op, which installs as
`mamba_jax_kernels`) and nothing else, and installs beside PyPI's `kernels` package."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import mamba_jax

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Checkout folder -> the package it installs as; the wheel must take these and leave the others.
LIBRARY = {"mamba_jax": "mamba_jax", "kernels": "mamba_jax_kernels"}
CHECKOUT_ONLY = ("experiments", "benchmarks", "tests")

# PyPI's `kernels` (Hugging Face's kernel hub client), whose import name is `kernels`: the package
# the op's old import name collided with. Tests never reach the network: the wheel is taken from
# a folder (MAMBA_JAX_WHEELHOUSE, else .wheelhouse/ in the checkout), else the test is skipped.
PYPI_KERNELS = "kernels==0.17.2"
WHEELHOUSE_ENV = "MAMBA_JAX_WHEELHOUSE"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  """Our wheel, built offline from a copy of the checkout (so the build writes nothing into it)."""
  tmp_path = tmp_path_factory.mktemp("wheel")
  source = tmp_path / "source"
  source.mkdir()
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, source / name)
  for name in (*LIBRARY, *CHECKOUT_ONLY):
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
  (path,) = (tmp_path / "dist").glob("mamba_jax-*.whl")
  return path


def test_wheel_contains_mamba_jax_and_mamba_jax_kernels_only(wheel):
  names = zipfile.ZipFile(wheel).namelist()
  top_level = {
    name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
  }
  assert top_level == set(LIBRARY.values()), top_level
  # Every module of both folders (pyproject lists the packages one by one: a new subpackage must
  # be added there), under its installed name.
  for folder, package in LIBRARY.items():
    for path in (ROOT / folder).rglob("*.py"):
      name = f"{package}/{path.relative_to(ROOT / folder).as_posix()}"
      assert name in names, name
  assert "mamba_jax_kernels/selective_scan/__init__.py" in names
  assert "mamba_jax/baselines/__init__.py" in names


def _wheelhouse():
  """The folder holding PyPI's kernels 0.17.2 wheel, or skip saying how to provide one."""
  candidates = [os.environ.get(WHEELHOUSE_ENV), ROOT / ".wheelhouse"]
  for folder in candidates:
    if folder and any(pathlib.Path(folder).glob("kernels-0.17.2-*.whl")):
      return pathlib.Path(folder)
  pytest.skip(
    f"no {PYPI_KERNELS} wheel in ${WHEELHOUSE_ENV} or .wheelhouse/ (tests never download); "
    f"provide one with `pip download --no-deps {PYPI_KERNELS} -d .wheelhouse` (or -d DIR and "
    f"{WHEELHOUSE_ENV}=DIR)"
  )


# Run in the fresh venv: both packages import, from where, and the op computes.
SIDE_BY_SIDE = """
import importlib.metadata, json, sys
import numpy as np
import kernels, mamba_jax, mamba_jax_kernels
from mamba_jax_kernels.selective_scan import selective_scan
args = [np.asarray(a, np.float32) for a in json.loads(sys.argv[1])]
y = mamba_jax.selective_scan(*args, implementation="reference")
assert mamba_jax.selective_scan is selective_scan
print(json.dumps({
  "kernels": kernels.__file__,
  "kernels_version": importlib.metadata.version("kernels"),
  "mamba_jax": mamba_jax.__file__,
  "mamba_jax_kernels": mamba_jax_kernels.__file__,
  "y": np.asarray(y).tolist(),
}))
"""


def test_wheel_installs_beside_pypi_kernels(wheel, tmp_path):
  """Our wheel and PyPI's `kernels` in one fresh venv: neither overwrites the other, both import,
  and the op runs from the installed wheel (not the checkout)."""
  wheelhouse = _wheelhouse()
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
  python = venv / "bin" / "python"
  subprocess.run(
    [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
    + ["--no-index", "--find-links", str(wheelhouse), str(wheel), PYPI_KERNELS],
    check=True,
  )
  site_packages = pathlib.Path(
    subprocess.run(
      [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
  )
  # The dependencies (jax, numpy, huggingface_hub, ...) come from this interpreter's
  # site-packages folders, after the fresh venv's own. A path line in a .pth does not process the
  # .pth files in that folder, so this venv's editable install of the checkout stays out (and the
  # checkout itself, on this sys.path through pytest, is no site-packages folder).
  running = [p for p in sys.path if pathlib.Path(p).name in ("site-packages", "dist-packages")]
  (site_packages / "_deps_from_test_runner.pth").write_text("\n".join(running) + "\n")

  rng = np.random.default_rng(0)
  b, l, d, n = 1, 5, 3, 2
  args = [
    rng.normal(size=(b, l, d)),  # u
    np.abs(rng.normal(size=(b, l, d))) * 0.5,  # delta
    -np.exp(rng.normal(size=(d, n))),  # A
    rng.normal(size=(b, l, n)),  # B
    rng.normal(size=(b, l, n)),  # C
  ]
  env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}  # no PYTHONPATH
  result = subprocess.run(
    [python, "-P", "-c", SIDE_BY_SIDE, json.dumps([a.tolist() for a in args])],
    capture_output=True,
    text=True,
    cwd=tmp_path,  # not the checkout, whose kernels/ folder would otherwise be importable
    env=env,
  )
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["kernels_version"] == "0.17.2"
  assert pathlib.Path(out["kernels"]) == site_packages / "kernels" / "__init__.py"
  assert pathlib.Path(out["mamba_jax"]) == site_packages / "mamba_jax" / "__init__.py"
  assert pathlib.Path(out["mamba_jax_kernels"]) == (
    site_packages / "mamba_jax_kernels" / "__init__.py"
  )
  expected = mamba_jax.selective_scan(
    *[np.asarray(a, np.float32) for a in args], implementation="reference"
  )
  np.testing.assert_allclose(np.asarray(out["y"]), np.asarray(expected), rtol=1e-6, atol=1e-6)
