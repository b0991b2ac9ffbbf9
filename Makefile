# The two commands a newcomer types: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint venv test-deps clean

$(VENV)/.run-deps: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements.txt requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@ $(VENV)/.run-deps

venv: $(VENV)/.run-deps

## The service with a demo on the embedded default (SQLite, serverless Celery broker).
run: $(VENV)/.run-deps
	$(PY) bin/compile-messages
	HOST=$(HOST) PORT=$(PORT) bin/run-dev

## Everything the tests need, then the whole suite against real services.
test: $(VENV)/.test-deps
	bin/test-services
	$(PY) bin/compile-messages
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PY) bench/snippet_size.py
	$(PY) bin/audit-dependencies

lint: $(VENV)/.test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf var staticfiles
