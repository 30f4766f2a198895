# Parley developer commands. `make up` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test test-fast lint proto manifests bench bench-compare fuzz clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Start a local cluster: 3 nodes + 1 gateway on ws://127.0.0.1:8080/ws
up: $(STAMP)
	$(BIN)/parley up

## Run the whole suite (unit, integration, faults)
test: $(STAMP)
	$(BIN)/ruff check services tests scripts bench fuzz
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -ra

## Everything but the slow fault suites
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check services tests scripts bench fuzz
	$(BIN)/ruff format --check services tests scripts bench fuzz
	$(BIN)/mypy

## Regenerate services/parley/_generated from proto/
proto: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

## Regenerate k8s/ from the Helm chart's defaults
manifests: $(STAMP)
	$(BIN)/python scripts/render_manifests.py

## Benchmarks (print numbers; see docs/benchmarks.md)
bench: $(STAMP)
	$(BIN)/python -m parley.bench
	$(BIN)/python scripts/bench_moves.py
	$(BIN)/python scripts/bench_idle.py
	$(BIN)/python scripts/bench_history.py
	$(BIN)/python scripts/bench_archive.py
	$(BIN)/python scripts/bench_compare.py

## Parley side by side with a bare websockets server and Socket.IO 4 (one core each)
bench-compare: $(STAMP)
	$(BIN)/python scripts/bench_compare.py

## Coverage-guided fuzzing of the gateway's input (atheris); FUZZ_SECONDS=300 by default
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	$(BIN)/pip install --quiet atheris
	mkdir -p .fuzz-corpus
	$(BIN)/python fuzz/fuzz_gateway_input.py -max_total_time=$(FUZZ_SECONDS) \
		-print_final_stats=1 .fuzz-corpus fuzz/seeds

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
