# Two commands on a fresh machine: `make demo` and `make test`. Each creates its venvs when missing.
# `make test` runs the suite on two legs, each in its own venv from the same pyproject.toml:
#   test-locked  Python 3.11, the pinned JAX (requirements.lock), in .venv, with the interop extra:
#                the whole suite (the op, the library, torch interop, every experiments test:
#                multi-process, interruption and resume, the study sweeps, the wheel build)
#   test-latest  Python 3.12, the newest JAX served (requirements-latest.lock), in .venv-latest:
#                what depends on the JAX version, the op and the library (marker `core`, set by
#                tests/conftest.py for tests/selective_scan and tests/mamba_jax) and one smoke
#                run per study (marker `smoke`); skipped, with the reason printed, when no
#                Python 3.12 is found
# Each leg compiles into its own persistent cache, emptied first (tests/conftest.py), and prints its
# wall time. The locked leg compiles with XLA's backend optimisations off (a third less time);
# the latest leg keeps them on, so the op and the library are also tested as users compile them.
# A test file stays on one xdist worker (--dist loadfile: a module's fixtures run once).
# `make test-all` also runs the tests marked `slow` (none today).

# The first runnable `name` on PATH, else pyenv's newest installed `version`. pyenv's shims answer
# `command -v python3.12` even when no 3.12 is selected, so each candidate is run, not just found.
find_python = $(shell for p in $$(which -a $(1) 2>/dev/null); do \
    "$$p" -c '' 2>/dev/null && { echo "$$p"; exit 0; }; done; \
  pyenv=$$(command -v pyenv || echo "$${PYENV_ROOT:-$$HOME/.pyenv}/bin/pyenv"); \
  v=$$("$$pyenv" latest $(2) 2>/dev/null) && p="$$("$$pyenv" root)/versions/$$v/bin/$(1)" && \
    "$$p" -c '' 2>/dev/null && echo "$$p")

PYTHON ?= $(or $(call find_python,python3.11,3.11),python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PYTHON_LATEST ?= $(call find_python,python3.12,3.12)
VENV_LATEST := .venv-latest
PY_LATEST := $(VENV_LATEST)/bin/python
STAMP_LATEST := $(VENV_LATEST)/.installed

# Prints the leg's interpreter and JAX, so a CI log says which leg a failure came from.
SHOW_VERSIONS := -c "import platform, jax; \
  print('== Python', platform.python_version(), '| jax', jax.__version__)"

.PHONY: demo test test-all test-locked test-latest lint bench venv venv-latest clean

# PyPI's `kernels` package, fetched once with the venvs: test_wheel installs our wheel beside it
# (offline, from this folder; tests never download).
WHEELHOUSE := .wheelhouse
BESIDE := kernels==0.17.2

# The interop extra (torch CPU, transformers) is installed in the 3.11 leg only: its torch wheel is
# on disk for Python 3.11, and pip would fetch a multi-GB CUDA build for 3.12.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e ".[test,interop,lint]"
	$(PY) -m pip download -q --no-deps -d $(WHEELHOUSE) $(BESIDE)
	touch $(STAMP)

$(STAMP_LATEST): pyproject.toml requirements-latest.lock
	test -x $(PY_LATEST) || $(PYTHON_LATEST) -m venv $(VENV_LATEST)
	$(PY_LATEST) -m pip install -q --upgrade pip
	$(PY_LATEST) -m pip install -q -c requirements-latest.lock -e ".[test,checkpoints]"
	$(PY_LATEST) -m pip download -q --no-deps -d $(WHEELHOUSE) $(BESIDE)
	touch $(STAMP_LATEST)

venv: $(STAMP)

venv-latest: $(STAMP_LATEST)

# The main job: study A (length generalisation via image reconstruction) on the embedded digits.
WORKDIR ?= runs/demo
# On the CPU unless JAX_PLATFORMS says otherwise: the venv's libtpu (the test extra's, for compiling
# the TPU kernel without a TPU) would otherwise look for a TPU and log an error line.
demo: $(STAMP)
	JAX_PLATFORMS=$${JAX_PLATFORMS:-cpu} $(PY) -m experiments.main \
	  --config=experiments/studies/length_generalisation/configs/digits.py --workdir=$(WORKDIR)

test: test-locked test-latest

# Runs pytest on a leg: $(1) the interpreter, $(2) the leg's name, $(3) pytest's selection, $(4)
# JAX_DISABLE_MOST_OPTIMIZATIONS (1: XLA's LLVM backend at -O0 without its expensive passes, the
# same HLO optimised the same way; the tests' tiny programs spend most of their time compiling).
# The cache folder is emptied first, so a run never reuses programs compiled by an earlier one.
TEST_CACHE := .test-cache
MARKERS ?= not slow
define run_leg
	@$(1) $(SHOW_VERSIONS)
	rm -rf $(TEST_CACHE)/$(2)
	@start=$$(date +%s); \
	MAMBA_JAX_TEST_CACHE=$(TEST_CACHE)/$(2) JAX_DISABLE_MOST_OPTIMIZATIONS=$(4) $(1) -m pytest -q -n 2 --dist loadfile --durations=30 $(3) tests; \
	status=$$?; echo "== test-$(2): $$(( $$(date +%s) - start )) s wall"; exit $$status
endef

test-all:
	$(MAKE) test MARKERS=

test-locked: $(STAMP)
	$(call run_leg,$(PY),locked,$(if $(MARKERS),-m "$(MARKERS)"),1)

ifeq ($(strip $(PYTHON_LATEST)),)
test-latest:
	@echo "== test-latest SKIPPED: no Python 3.12 found (neither a runnable python3.12 on PATH nor" \
	  "a pyenv 3.12); install one, or name it with PYTHON_LATEST=/path/to/python3.12"
else
test-latest: $(STAMP_LATEST)
	$(call run_leg,$(PY_LATEST),latest,-m "(core or smoke)$(if $(MARKERS), and ($(MARKERS)))",0)
endif

# ruff (lint + format check) over the tree; pyright's checker over kernels/ and mamba_jax/.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/basedpyright --pythonpath $(PY)

bench: $(STAMP)
	$(PY) -m mamba_jax_kernels.selective_scan.bench
	$(PY) -m benchmarks.model_bench

clean:
	rm -rf $(VENV) $(VENV_LATEST) .pytest_cache $(TEST_CACHE) $(WHEELHOUSE)
