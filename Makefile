# Two commands set everything up: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOME_DIR ?= ./var
HOST    ?= 127.0.0.1
PORT    ?= 8080

.PHONY: run test lint format bench clean

# every benchmark module, slowest first (make test runs their quick passes two at a time)
BENCHMARKS := benchmarks.serving benchmarks.training benchmarks benchmarks.release_switch \
	benchmarks.monitoring benchmarks.pit benchmarks.online benchmarks.control_plane \
	benchmarks.audit_tree

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
	$(MAKE) --no-print-directory -j2 --output-sync=target $(addprefix quick/,$(BENCHMARKS))

# The benchmarks' smoke passes, two at a time (make test): they check that each runs and
# prints its ratios; the timings that count come from `make bench`, one at a time.
quick/%: $(STAMP)
	$(BIN)/python -m $* --quick

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	for b in $(BENCHMARKS); do $(BIN)/python -m $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
