# cbm_dask: two commands on a bare Debian/Ubuntu machine:
#   make demo   set up everything and run the demo end to end
#   make test   set up everything, lint, and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cbm-installed
SYSTEM_STAMP := $(VENV)/.cbm-system

.PHONY: setup demo test test-fast test-ordered lint bench clean-services help

help:
	@echo "make demo   - set up and run the demo on embedded defaults"
	@echo "make test   - set up, lint and run the whole test suite in random order"
	@echo "make test-fast   - the tests that need no server, no real data and little time"
	@echo "make test-ordered - the whole test suite in file order"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - run the benchmarks (results go to docs/benchmarks.md by hand)"

setup: $(STAMP)

$(SYSTEM_STAMP): scripts/bootstrap-system.sh
	@bash scripts/bootstrap-system.sh
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml $(SYSTEM_STAMP)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade "pip>=25.1" 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -m pip install -q -e ".[all]" --group dev 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import cbm_dask, geopandas, sqlalchemy, psycopg, alembic" \
	  || { echo "cbm setup: the Python install failed, see the pip output above" >&2; exit 1; }
	@touch $@

demo: setup
	$(BIN)/cbm demo

# Lanes: see tests/README.md.
FAST := not services and not realdata and not slow

# The whole suite in a random order (the seed is printed: rerun an order with
# `pytest -p randomly --randomly-seed=N`); `test-ordered` keeps the file order.
test: setup lint
	$(BIN)/python -m pytest -p randomly

test-ordered: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "$(FAST)"

lint: setup
	$(BIN)/ruff check cbm_dask tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m benchmarks

clean-services:
	-$(BIN)/cbm db down
