# syncd — `make demo` shows it working, `make test` runs every check. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: help system-deps venv demo test lint typecheck unit integration fuzz bench bench-scaling clean

help:
	@echo "make demo   - install what is missing, start a local broker, sync the example events, show them"
	@echo "make test   - lint, type-check and the whole test suite (starts its own broker and PostgreSQL)"
	@echo "make fuzz   - hostile message bodies through decode, routing and each driver (minutes)"
	@echo "make bench  - throughput, latency, memory and verify against its own broker and PostgreSQL (~2-3 min)"
	@echo "make bench-scaling - events/s and CPU with 1, 2 and 3 daemons sharing one queue"
	@echo "make venv   - the .venv with syncd and its test tools"

system-deps:  ## ActiveMQ (Java 17) and PostgreSQL from Debian's packages, where missing
	@scripts/install-system-deps

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: system-deps venv
	demo/run.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit

integration: system-deps venv
	$(BIN)/pytest tests/integration

test: system-deps venv lint typecheck
	$(BIN)/pytest

# `make test` runs the same fuzz tests briefly (hypothesis profile "default"); this runs them
# long: FUZZ_EXAMPLES bodies per dialect. A body that breaks the path goes in tests/data/hostile/.
FUZZ_EXAMPLES ?= 20000
fuzz: system-deps venv
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -p no:cacheprovider \
		tests/integration/test_fuzz.py -k no_body

bench: system-deps venv  ## not a test: prints a table and writes var/bench.json
	$(BIN)/python -m bench.run

bench-scaling: system-deps venv  ## not a test: 1, 2 and 3 daemons on one queue; var/scaling.json
	$(BIN)/python -m bench.scaling

clean:
	rm -rf var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
