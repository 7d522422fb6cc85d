# loyalty_assets — every target sets itself up on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE_CUSTOMERS ?= 5000
# pytest-xdist workers for `make test`: one per core (`auto`); `TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= auto
SAMPLE_DAYS ?= 400
SAMPLE_END ?= 2025-06-30
DATE ?= $(shell $(BIN)/python -c "from loyalty_assets.settings import Settings; from loyalty_assets.config.catalog import load_program; print(load_program(Settings.from_env().campaigns_dir).sample_date)" 2>/dev/null)
export DAGSTER_HOME ?= $(CURDIR)/.dagster
DATA_DIR := $(or $(LOYALTY_DATA_DIR),data)

# The inner loop: pure transforms, filters, config and warehouse primitives — no whole daily jobs.
FAST_TESTS := tests/test_ab_testing.py tests/test_event_triggers.py tests/test_features.py \
	tests/test_filters_config.py tests/test_gates_and_groups.py tests/test_journey.py tests/test_message_rules.py \
	tests/test_promotions.py tests/test_segments.py tests/test_audiences.py \
	tests/test_warehouse.py tests/test_sql_source.py tests/test_summary.py tests/test_cli_errors.py \
	tests/test_ui_conventions.py tests/test_definitions.py tests/test_catalog.py

.PHONY: help install run test test-fast dev lint typecheck bench bench-history bench-pipeline clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# bytecode of the project's modules now: with PYTHONDONTWRITEBYTECODE set, every `loyalty` start
	@# would compile them again (~0.45 s); a module edited later is compiled in memory as usual
	$(BIN)/python -m compileall -q loyalty_assets
	@# `source .venv/bin/activate` also points DAGSTER_HOME at the project's instance (the one `make dev` shows).
	@grep -q DAGSTER_HOME $(BIN)/activate || printf '\nexport DAGSTER_HOME="%s"\n' '$(CURDIR)/.dagster' >> $(BIN)/activate
	@touch $@

install: $(BIN)/.installed ## create .venv and install the project with its dev tools

$(DAGSTER_HOME)/dagster.yaml:
	@mkdir -p $(DAGSTER_HOME)
	@printf 'telemetry:\n  enabled: false\n' > $@

run: install $(DAGSTER_HOME)/dagster.yaml ## sample data (if absent) + the whole daily pipeline for the sample date on SQLite, then a summary
	@$(BIN)/python -m loyalty_assets.sample_data --out $(DATA_DIR) --customers $(SAMPLE_CUSTOMERS) --days $(SAMPLE_DAYS) \
		--end-date $(SAMPLE_END) --if-absent --no-progress > $(VENV)/sample_data.log \
		|| { cat $(VENV)/sample_data.log; exit 1; }
	@tail -n 1 $(VENV)/sample_data.log | sed 's/^  total */sample data in $(DATA_DIR), rows: /'
	@$(BIN)/loyalty run --date $(DATE)
	@$(BIN)/loyalty summary --date $(DATE)
	@echo "Next: make dev (the UI, these runs included), .venv/bin/loyalty --help"

test: install $(DAGSTER_HOME)/dagster.yaml ## the test suite on TEST_WORKERS processes (PostgreSQL tests run when PostgreSQL is reachable; mandatory with LOYALTY_REQUIRE_POSTGRES=1)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

test-fast: install ## the inner loop: pure transforms, filters, config, warehouse primitives (SQLite only), < 60 s
	$(BIN)/python -m pytest -q -m "not postgres" $(FAST_TESTS)

dev: install $(DAGSTER_HOME)/dagster.yaml ## the Dagster UI on http://127.0.0.1:3000 (Ctrl-C or SIGTERM stop it)
	$(BIN)/loyalty dev --port 3000

lint: install ## ruff, then mypy (configuration and strictness in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: install ## mypy only
	$(BIN)/mypy

bench: install ## the segment benchmark: Polars vs DuckDB at several scales (see README)
	$(BIN)/python -m loyalty_assets.bench

bench-history: install ## a day's cost against the length of history: 1M customers, 100 vs 800 days (BENCH_ARGS=...; see README)
	$(BIN)/python -m loyalty_assets.bench_history $(BENCH_ARGS)

bench-pipeline: install ## the whole daily pipeline per stage beside its peers, 10k/100k/1M, SQLite + PostgreSQL (BENCH_ARGS=...; see README)
	$(BIN)/python -m loyalty_assets.bench_pipeline $(BENCH_ARGS)

clean: ## remove the local warehouse, stored frames and the Dagster home (not the sample data)
	rm -rf .loyalty .dagster
