# The two commands of the README: `make dev` runs the proxy on a local moto S3 and OpenBao Vault,
# `make test` runs lint, type checks and the test suite. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: dev test lint install-dev install-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-dev

install-dev: $(VENV)/.installed-dev
install-test: $(VENV)/.installed-test

dev: $(VENV)/.installed-dev
	$(BIN)/s3proxy dev

lint: $(VENV)/.installed-test
	$(BIN)/ruff check s3proxy tests bench
	$(BIN)/ruff format --check s3proxy tests bench
	$(BIN)/mypy

tests/js/node_modules/.installed: tests/js/package-lock.json
	cd tests/js && npm ci --silent --no-audit --no-fund
	touch $@

test: lint tests/js/node_modules/.installed
	$(BIN)/pytest
