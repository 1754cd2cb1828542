# The README's two commands: `make run` and `make test`. `make bench` runs the benchmarks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make run PORT=8080 HOST=0.0.0.0` serves elsewhere; the default stays 127.0.0.1:5000.
HOST ?= 127.0.0.1
PORT ?= 5000
# Re-install when pyproject.toml changes. `make run` installs only what the panel needs;
# the test extras (Playwright among them) come with `make test`.
CKSUM := $(shell cksum pyproject.toml | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.installed-run-$(CKSUM)
TEST_STAMP := $(VENV)/.installed-test-$(CKSUM)

.PHONY: run test bench services system-packages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TEST_STAMP) $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/intercity db upgrade
	$(BIN)/intercity run --host $(HOST) --port $(PORT)

system-packages:
	bash scripts/test-system.sh packages

services:
	bash scripts/test-system.sh services

test: system-packages $(TEST_STAMP) services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: system-packages $(TEST_STAMP) services
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
