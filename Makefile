# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

# The main job: study A (length generalisation via image reconstruction) on the embedded digits.
WORKDIR ?= runs/demo
demo: $(STAMP)
	$(PY) -m experiments.main --config=experiments/configs/reconstruction_digits.py --workdir=$(WORKDIR)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

bench: $(STAMP)
	$(PY) -m kernels.selective_scan.bench
	$(PY) -m mamba_jax.bench

clean:
	rm -rf $(VENV) .pytest_cache
