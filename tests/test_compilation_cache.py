"""The persistent compilation cache that `make test` turns on (tests/conftest.py): it is used,
and a warm cache cannot hand a changed program an old executable."""

import math
import os
import subprocess
import sys

import jax
import pytest

# One program, its constant taken from the command line: a different constant is a different
# program under the same function name and shapes.
SCRIPT = """
import sys
import jax, jax.numpy as jnp
factor = float(sys.argv[1])
def program(x):
  return jnp.sin(x) * factor
print(float(jax.jit(program)(jnp.float32(1.0))))
"""


def _run(cache_dir, factor):
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=str(cache_dir),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
  )
  result = subprocess.run(
    [sys.executable, "-c", SCRIPT, str(factor)],
    env=env,
    capture_output=True,
    text=True,
    check=True,
    timeout=300,
  )
  entries = {name for name in os.listdir(cache_dir) if name.startswith("jit_program")}
  return float(result.stdout.strip().splitlines()[-1]), entries


def test_a_warm_cache_is_reused_and_a_changed_program_compiles_afresh(tmp_path):
  first, entries = _run(tmp_path, 2.0)
  assert math.isclose(first, 2 * math.sin(1.0), rel_tol=1e-6) and len(entries) == 1
  again, entries_again = _run(tmp_path, 2.0)
  assert again == first and entries_again == entries  # served from the cache: nothing new
  changed, entries_changed = _run(tmp_path, 3.0)
  assert math.isclose(changed, 3 * math.sin(1.0), rel_tol=1e-6)  # not the cached 2 sin(1)
  assert len(entries_changed) == 2


def test_the_suite_uses_one_cache_folder_per_worker_when_asked():
  base = os.environ.get("MAMBA_JAX_TEST_CACHE")
  if not base:
    pytest.skip("MAMBA_JAX_TEST_CACHE is unset: this run compiles without the shared cache")
  worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
  assert jax.config.jax_compilation_cache_dir == os.path.join(os.path.abspath(base), worker)
