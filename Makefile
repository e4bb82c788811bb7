# mmbench — the user's verbs. Each target creates .venv itself when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install test bench bench-full bench-all bench-speed bench-approx bench-data gpu-check paper lint format clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)  ## create .venv with mmbench and its dev tools

test: $(STAMP)  ## the test suite (lint + pytest, CPU only)
	$(BIN)/ruff check mmbench tests hydra_plugins
	$(BIN)/python -m pytest -q

bench: $(STAMP)  ## embedded benchmark, ~5 min on 2 cores: cgmnist_mini, mmpareto/uniform x 6 seeds, one_joint_loss x 4 -> leaderboard (docs/variance.md)
	$(BIN)/mmbench train --multirun experiment=bench

bench-full: $(STAMP)  ## the 15-epoch protocol (about twice as long, less variance): 3 strategies x 6 seeds
	$(BIN)/mmbench train --multirun experiment=bench_full

bench-all: $(STAMP)  ## embedded benchmark over every strategy x 3 seeds
	$(BIN)/mmbench train --multirun experiment=bench_all

paper: $(STAMP)  ## the paper table: 4 datasets x 4 strategies x 3 seeds on this machine's GPUs
	$(BIN)/mmbench train --multirun sweep=paper

paper-%: $(STAMP)  ## one dataset of the paper table, e.g. make paper-cremad
	$(BIN)/mmbench train --multirun sweep=paper_$*

bench-speed: $(STAMP)  ## step cost per strategy -> outputs/benchmarks/step_cost.csv
	$(BIN)/mmbench bench-speed --out outputs/benchmarks/step_cost.csv

bench-approx: $(STAMP)  ## representation-level vs exact MMPareto in training -> outputs/benchmarks/approximation.md
	$(BIN)/mmbench bench-approx --out outputs/benchmarks/approximation.csv

gpu-check: $(STAMP)  ## the CUDA path on one GPU (<= 8 min) -> outputs/benchmarks/gpu_check.md
	$(BIN)/python -m mmbench.bench.gpu_check --out outputs/benchmarks/gpu_check.md

bench-data: $(STAMP)  ## data-loader throughput -> outputs/benchmarks/data_throughput.csv
	$(BIN)/mmbench bench-data --out outputs/benchmarks/data_throughput.csv

lint: $(STAMP)
	$(BIN)/ruff check mmbench tests hydra_plugins
	$(BIN)/ruff format --check mmbench tests hydra_plugins

format: $(STAMP)
	$(BIN)/ruff format mmbench tests hydra_plugins

clean:
	rm -rf outputs/runs outputs/multirun .pytest_cache
