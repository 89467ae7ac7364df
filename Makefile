# The two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench services online-retail-report notebook clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# core install: what the default path needs, quick on a fresh machine
$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# everything: all extras and the test tools
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.core

demo: $(VENV)/.core
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
