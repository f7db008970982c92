# Two commands on a fresh machine: `make demo` and `make test`. Each creates its venvs when missing.
# `make test` runs the suite on two legs, each in its own venv from the same pyproject.toml:
#   test-locked  Python 3.11, the pinned JAX (requirements.lock), in .venv, with the interop extra
#   test-latest  Python 3.12, the newest JAX served (requirements-latest.lock), in .venv-latest;
#                skipped, with the reason printed, when no Python 3.12 is found

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

.PHONY: demo test test-locked test-latest lint bench venv venv-latest clean

# The interop extra (torch CPU, transformers) is installed in the 3.11 leg only: its torch wheel is
# on disk for Python 3.11, and pip would fetch a multi-GB CUDA build for 3.12.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e ".[test,interop,lint]"
	touch $(STAMP)

$(STAMP_LATEST): pyproject.toml requirements-latest.lock
	test -x $(PY_LATEST) || $(PYTHON_LATEST) -m venv $(VENV_LATEST)
	$(PY_LATEST) -m pip install -q --upgrade pip
	$(PY_LATEST) -m pip install -q -c requirements-latest.lock -e ".[test,checkpoints]"
	touch $(STAMP_LATEST)

venv: $(STAMP)

venv-latest: $(STAMP_LATEST)

# The main job: study A (length generalisation via image reconstruction) on the embedded digits.
WORKDIR ?= runs/demo
demo: $(STAMP)
	$(PY) -m experiments.main --config=experiments/studies/length_generalisation/configs/digits.py \
	  --workdir=$(WORKDIR)

test: test-locked test-latest

test-locked: $(STAMP)
	@$(PY) $(SHOW_VERSIONS)
	$(PY) -m pytest -q -n 2 --durations=20 tests

ifeq ($(strip $(PYTHON_LATEST)),)
test-latest:
	@echo "== test-latest SKIPPED: no Python 3.12 found (neither a runnable python3.12 on PATH nor" \
	  "a pyenv 3.12); install one, or name it with PYTHON_LATEST=/path/to/python3.12"
else
test-latest: $(STAMP_LATEST)
	@$(PY_LATEST) $(SHOW_VERSIONS)
	$(PY_LATEST) -m pytest -q -n 2 --durations=20 tests
endif

# ruff (lint + format check) over the tree; pyright's checker over kernels/ and mamba_jax/.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/basedpyright --pythonpath $(PY)

bench: $(STAMP)
	$(PY) -m kernels.selective_scan.bench
	$(PY) -m benchmarks.model_bench

clean:
	rm -rf $(VENV) $(VENV_LATEST) .pytest_cache
