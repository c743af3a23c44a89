# The two commands of the README: `make demo` and `make test`. Each sets everything up on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(abspath .dagster_home)
# The bundled sample data covers these days.
SAMPLE_RANGE := 2026-11-16...2026-11-20
# Quiet by default: a line per day and step (items, embedded and cached texts, clusters, stories, seconds) instead
# of Dagster's DEBUG events, Python's warnings, the model's loading bar and pip's notices. `make demo VERBOSE=1`
# brings them all back.
VERBOSE ?=
PIP := $(BIN)/pip $(if $(VERBOSE),,--quiet --quiet)
RUN_ENV := $(if $(VERBOSE),,PYTHONWARNINGS=ignore HF_HUB_DISABLE_PROGRESS_BARS=1)
RUN_LOGS := $(if $(VERBOSE),,--config-json '{"loggers": {"console": {"config": {"log_level": "INFO"}}}}')

.PHONY: setup demo test lint ui daemon clean bench

# Install once; again when pyproject.toml changes. torch goes first, pinned, so pip takes the CPU wheel
# instead of several GB of CUDA packages.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

setup: $(BIN)/.installed $(DAGSTER_HOME)/dagster.yaml

# Copy the sample into the landing folder, materialize every asset for its five days as one run, show the result.
demo: setup
	mkdir -p data/landing
	cp data/sample/* data/landing/
	$(RUN_ENV) $(BIN)/dagster asset materialize -m newsletter_pipeline.definitions --select '*' \
		--partition-range $(SAMPLE_RANGE) $(RUN_LOGS)
	$(RUN_ENV) $(BIN)/python -m newsletter_pipeline.summary

test: setup
	$(BIN)/pytest

# The style gates CI runs before the tests: lint rules, the formatting `ruff format` would give, and the layering
# (import-linter's contracts in pyproject.toml; test_layering.py runs them too).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The UI with the daemon (schedules, backfills): http://127.0.0.1:3000
ui: setup
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

# The speed benchmark (benchmarks/README.md): also installs BERTopic, for its comparison row.
bench: setup
	$(PIP) install -e '.[test,bench]'
	$(BIN)/python -m benchmarks.speed

clean:
	rm -rf data/landing data/outputs data/sheets data/cache $(DAGSTER_HOME)
