# Two commands set everything up: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOME_DIR ?= ./var
HOST    ?= 127.0.0.1
PORT    ?= 8080

.PHONY: run test lint format bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	FALAJ_HOME=$(HOME_DIR) $(BIN)/falaj run --demo --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile
	$(BIN)/python -m benchmarks --quick
	$(BIN)/python -m benchmarks.serving --quick
	$(BIN)/python -m benchmarks.control_plane --quick
	$(BIN)/python -m benchmarks.pit --quick
	$(BIN)/python -m benchmarks.online --quick
	$(BIN)/python -m benchmarks.training --quick
	$(BIN)/python -m benchmarks.monitoring --quick
	$(BIN)/python -m benchmarks.release_switch --quick
	$(BIN)/python -m benchmarks.audit_tree --quick

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.serving
	$(BIN)/python -m benchmarks.control_plane
	$(BIN)/python -m benchmarks.pit
	$(BIN)/python -m benchmarks.online
	$(BIN)/python -m benchmarks.training
	$(BIN)/python -m benchmarks.monitoring
	$(BIN)/python -m benchmarks.release_switch

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
