# The two commands: `make run` and `make test`. Both do all set-up from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BROKER ?= sqlite:///taskengine.db

.PHONY: run test lint types unit bench bench-peers chaos dist clean settings-table

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/taskengine --broker $(BROKER) serve

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(VENV)/.installed-dev
	$(BIN)/mypy

# The suite in TEST_WORKERS pytest-xdist processes, a test file per process at a time (ADR 0039);
# coverage is combined from every worker and its children.
TEST_WORKERS ?= 4
test: lint types
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --cov --cov-report=term -q --durations=15

# The README's settings table, from the Settings fields and their docstrings (a test checks it).
settings-table: $(VENV)/.installed
	$(BIN)/python -m taskengine.settings_table --write README.md

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

# Task Engine next to Celery, Dramatiq, arq, SAQ, taskiq, Huey and RQ; the peers live only in
# bench/.peers-venv (needs redis-server on PATH). See docs/BENCHMARKS.md.
PEERS := bench/.peers-venv
$(PEERS)/.installed: bench/peers/requirements.txt
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install --quiet -r bench/peers/requirements.txt
	touch $@

bench-peers: $(VENV)/.installed-dev $(PEERS)/.installed
	$(PEERS)/bin/python -m bench.peers.run

chaos: $(VENV)/.installed-dev
	CHAOS_LONG=1 $(BIN)/pytest tests/chaos -q

# the sdist and wheel, as a package index would get them (tests/e2e/test_install.py installs them)
dist: $(VENV)/.installed-dev
	$(BIN)/python -m build

clean:
	rm -rf $(VENV) .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache
