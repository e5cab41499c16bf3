# make test: create .venv when missing, install the package with its dev extra, run the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint format demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/pip install --quiet torch torchvision
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check breakhis_lit tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check breakhis_lit tests benchmarks
	$(BIN)/ruff format --check breakhis_lit tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix breakhis_lit tests benchmarks
	$(BIN)/ruff format breakhis_lit tests benchmarks

demo: $(STAMP)
	$(BIN)/breakhis fit --config configs/demo.yaml
	$(BIN)/breakhis test --config configs/demo.yaml
	$(BIN)/breakhis report lightning_logs/demo --out reports/demo

clean:
	rm -rf .pytest_cache .ruff_cache reports
