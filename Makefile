# `make test` and `make demo` work on a fresh machine: they build .venv with pip first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast lint demo bench clean

install: $(STAMP)

# Re-install whenever the dependency list changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --editable '.[dev,loggers]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/cam-audit demo --out runs/demo

bench: $(STAMP)
	$(BIN)/python scripts/bench_engine.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info
