# dos_bench: `make run` and `make test` do all the set-up on a fresh machine.
PY_SYS   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
# On a machine without a GPU, pip finds this CPU build locally; installing it first means the
# package's `torch>=2.4` requirement is already met and no multi-GB CUDA build is pulled.
TORCH    ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install run test test-all lint format bench tables-smoke clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## train and evaluate the default experiment on the bundled toy eDOS data
run: $(STAMP)
	$(PY) -m dos_bench.train $(ARGS)

## the test suite without slow tests (< 10 min on 2 cores)
test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

## ruff (lint + format) and the import-linter layer contracts of pyproject.toml
lint: $(STAMP)
	$(VENV)/bin/ruff check dos_bench tests scripts docs
	$(VENV)/bin/ruff format --check dos_bench tests scripts docs
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format dos_bench tests scripts
	$(VENV)/bin/ruff check --fix dos_bench tests scripts

## speed and memory figures (measured, never asserted by tests)
bench: $(STAMP)
	$(PY) scripts/bench.py $(ARGS)

## every paper-table preset, scaled down on the toy data, then dos-tables --check (< 15 min)
tables-smoke: $(STAMP)
	$(PY) scripts/tables_smoke.py $(ARGS)

clean:
	rm -rf outputs .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
