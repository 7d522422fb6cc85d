# loyalty_assets — every target sets itself up on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE_CUSTOMERS ?= 5000
SAMPLE_DAYS ?= 400
SAMPLE_END ?= 2025-06-30
DATE ?= $(shell $(BIN)/python -c "from loyalty_assets.settings import Settings; from loyalty_assets.config.catalog import load_program; print(load_program(Settings.from_env().campaigns_dir).sample_date)" 2>/dev/null)
export DAGSTER_HOME ?= $(CURDIR)/.dagster
DATA_DIR := $(or $(LOYALTY_DATA_DIR),data)

.PHONY: help install run test dev lint bench clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/.installed ## create .venv and install the project with its dev tools

$(DAGSTER_HOME)/dagster.yaml:
	@mkdir -p $(DAGSTER_HOME)
	@printf 'telemetry:\n  enabled: false\n' > $@

run: install $(DAGSTER_HOME)/dagster.yaml ## sample data (if absent) + the whole daily pipeline for the sample date on SQLite, then a summary
	$(BIN)/python -m loyalty_assets.sample_data --out $(DATA_DIR) --customers $(SAMPLE_CUSTOMERS) --days $(SAMPLE_DAYS) --end-date $(SAMPLE_END) --if-absent
	$(BIN)/dagster asset materialize -f definitions.py --select '*' --partition $(DATE)
	$(BIN)/loyalty summary --date $(DATE)

test: install $(DAGSTER_HOME)/dagster.yaml ## the test suite (PostgreSQL tests run when PostgreSQL is reachable; mandatory with LOYALTY_REQUIRE_POSTGRES=1)
	$(BIN)/python -m pytest

dev: install $(DAGSTER_HOME)/dagster.yaml ## the Dagster UI on http://127.0.0.1:3000
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: install ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install ## the segment benchmark: Polars vs DuckDB at several scales (see README)
	$(BIN)/python -m loyalty_assets.bench

clean: ## remove the local warehouse, stored frames and the Dagster home (not the sample data)
	rm -rf .loyalty .dagster
