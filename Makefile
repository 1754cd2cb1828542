# The README's two commands: `make run` and `make test`. `make bench` runs the benchmarks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test bench services system-packages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/intercity db upgrade
	$(BIN)/intercity run --host 127.0.0.1 --port 5000

system-packages:
	bash scripts/test-system.sh packages

services:
	bash scripts/test-system.sh services

test: system-packages $(STAMP) services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: system-packages $(STAMP) services
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
