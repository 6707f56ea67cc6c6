# syncd — `make demo` shows it working, `make test` runs every check. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: help system-deps venv demo test lint typecheck unit integration bench clean

help:
	@echo "make demo   - install what is missing, start a local broker, sync the example events, show them"
	@echo "make test   - lint, type-check and the whole test suite (starts its own broker and PostgreSQL)"
	@echo "make bench  - throughput, latency and memory against its own broker and PostgreSQL (~1-2 min)"
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

bench: system-deps venv  ## not a test: prints a table and writes var/bench.json
	$(BIN)/python -m bench.run

clean:
	rm -rf var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
