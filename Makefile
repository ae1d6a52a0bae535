# The two commands of the README: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DAYS ?= 30
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export BTC_ASSETS_ENV ?= sandbox

.PHONY: install demo test dev lint bench clean emulators

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

install: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml

# The BigQuery emulator the tests start: its own venv under .cache/ (git-ignored), local-bigquery
# on Python 3.13 or the bqemulator fallback, DuckDB extensions unpacked under .cache/ too.
EMULATORS := .cache/emulators
$(EMULATORS)/.installed: tools/setup_emulators.sh | $(BIN)/python
	bash tools/setup_emulators.sh $(BIN)/python
	touch $@

emulators: $(EMULATORS)/.installed

demo: install
	$(BIN)/python -m btc_assets.ops.demo --days $(DAYS)

test: install emulators
	$(BIN)/ruff check .
	$(BIN)/pytest

dev: install
	$(BIN)/dagster dev -w workspace.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install emulators
	$(BIN)/python benchmarks/bench_backfill.py
	$(BIN)/python benchmarks/bench_resample.py
	$(BIN)/python benchmarks/bench_bigquery.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_serve.py

clean:
	rm -rf $(VENV) $(DAGSTER_HOME) data/lake data/reports data/warehouse.duckdb
