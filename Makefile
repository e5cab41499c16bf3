# make test: create .venv when missing, install the package with its dev extra, run the test suite.
# CPU=1 installs the CPU-only PyTorch wheels (no CUDA libraries: .venv about 1.9 GB instead of 6.3 GB): `make demo CPU=1`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CPU ?=
TORCH_INDEX := $(if $(filter 1 yes true,$(CPU)),--index-url https://download.pytorch.org/whl/cpu,)

.PHONY: install test lint format demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_INDEX) "torch==2.14.1" "torchvision==0.29.1" || \
		$(BIN)/pip install --quiet $(TORCH_INDEX) torch torchvision
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

# The leak, shown: the same demo model and seed trained on the paper's random image split and on the patient
# split, both tested at their last epoch (the patient split validates on 2 patients, so its best.ckpt is a coin
# toss), and one report comparing them (reports/demo/report.md opens with the answer).
DEMO_IMAGE := --config configs/demo.yaml --experiment demo-image --data.split image
NEWEST = $$(ls -d lightning_logs/$(1)/version_* | sort -V | tail -n 1)

demo: $(STAMP)
	$(BIN)/breakhis fit $(DEMO_IMAGE)
	$(BIN)/breakhis test $(DEMO_IMAGE) --ckpt_path last
	$(BIN)/breakhis fit --config configs/demo.yaml
	$(BIN)/breakhis test --config configs/demo.yaml --ckpt_path last
	$(BIN)/breakhis report $(call NEWEST,demo-image) $(call NEWEST,demo) --out reports/demo

clean:
	rm -rf .pytest_cache .ruff_cache reports
