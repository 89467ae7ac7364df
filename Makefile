# The two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench services online-retail-report notebook clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or newer, or name yours: make demo PYTHON=python3.12" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# core install: what the default path needs, quick on a fresh machine
$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# what `make demo` and the next steps it prints need: the core and the API server (the serve extra: about
# 30 MB and half a minute on top of the core: README.md, Development)
$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[serve]'
	touch $@ $(VENV)/.core

# everything: all extras and the test tools
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.core $(VENV)/.demo

demo: $(VENV)/.demo
	$(BIN)/rfmseg demo

services:
	bash scripts/services.sh

test: $(VENV)/.dev services
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# mypy reads its settings and the files to check (src/) from pyproject.toml's [tool.mypy]
lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(VENV)/.dev
	$(BIN)/python bench/run_all.py

# regenerate docs/online-retail.md from the real data, and the study notebook
online-retail-report: $(VENV)/.dev
	$(BIN)/python scripts/online_retail_report.py

notebook: $(VENV)/.dev
	$(BIN)/python scripts/build_notebook.py

clean:
	rm -rf $(VENV) rfmseg-runs build *.egg-info
