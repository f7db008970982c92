"""Shared pytest setup: tests run on CPU unless an accelerator is present; nothing reaches the
network; compiled programs are shared through JAX's persistent cache when the runner names one.
"""

import os

os.environ.setdefault("TFDS_DATA_DIR", os.path.join(os.path.dirname(__file__), ".no_tfds_data"))

# `make test` names one empty folder per leg (MAMBA_JAX_TEST_CACHE): each xdist worker, and every
# subprocess it starts (they inherit the environment), then reuses what an earlier test compiled.
# Entries are keyed by the program, the compile options, the devices and the jax/jaxlib versions,
# so a changed program compiles afresh; a failed compile is never stored.
# Set before JAX is imported, which reads these at import time.
_cache = os.environ.get("MAMBA_JAX_TEST_CACHE")
if _cache:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
    os.path.abspath(_cache), os.environ.get("PYTEST_XDIST_WORKER", "main")
  )
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"


import jax  # noqa: E402 (after the environment above, which JAX reads at import)
import pytest  # noqa: E402

CORE = ("selective_scan", "mamba_jax")  # folders of tests/ whose tests are marked `core`


def pytest_collection_modifyitems(items):
  """Marks the op's and the library's tests `core`: `make test-latest` selects them by it."""
  tests = os.path.dirname(os.path.abspath(__file__))
  for item in items:
    relative = os.path.relpath(str(item.path), tests)
    if relative.split(os.sep)[0] in CORE or relative == "test_compilation_cache.py":
      item.add_marker("core")


@pytest.fixture
def optimised_compile():
  """Compiles with XLA's backend optimisations on, as users compile, for a test whose tolerance
  is the float32 rounding of two optimised programs (the locked leg turns them off for speed)."""
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", False)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)
