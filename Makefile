# SkinSense. Two commands for a newcomer: `make run` and `make test` (see README).
SHELL := /bin/bash
PORT ?= 8000
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
LOAD_STAMP := $(VENV)/.load-installed

.PHONY: run test lint check install install-dev bench load

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# pip takes torch==2.14.1 / torchvision==0.29.1 from this machine's disk (see README).
$(RUN_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt $(RUN_STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(LOAD_STAMP): requirements-load.txt $(DEV_STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-load.txt
	touch $@

install: $(RUN_STAMP)
install-dev: $(DEV_STAMP)

# The embedded default: SQLite, eager Celery, local private media, a DEMO model.
run: $(RUN_STAMP)
	mkdir -p var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_default_model
	$(PY) manage.py seed_demo
	@echo ""
	@echo "  SkinSense is starting on http://127.0.0.1:$(PORT)/"
	@echo "  Log in as demo (clinician), derm (dermatologist), clinicadmin (clinic admin),"
	@echo "  auditor (staff: model performance) or outsider (another clinic),"
	@echo "  password: $${DEMO_PASSWORD:-skinsense-demo}. API docs: http://127.0.0.1:$(PORT)/api/docs/"
	@echo ""
	$(PY) manage.py runserver 127.0.0.1:$(PORT) --noreload

# The whole suite: lint, migration and deploy checks, then pytest against real PostgreSQL,
# Redis and Celery worker processes when they answer (they must, in CI).
test: $(DEV_STAMP)
	bash scripts/test.sh

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Lint, the import contracts (pyproject.toml: the engine has no Django, the apps depend one way)
# and the engine's types; make test runs the same checks first.
check: lint
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

# Load (not part of `make test`): Locust clinicians, a dermatologist and API readers against
# gunicorn + a Celery worker + PostgreSQL + Redis on loopback for LOAD_SECONDS (default 60).
LOAD_SECONDS ?= 60
load: $(LOAD_STAMP)
	$(PY) -m bench.load --duration $(LOAD_SECONDS)

# Benchmarks (not part of `make test`): every figure with its target (bench/targets.py) and
# whether it is met, in one run (~5-10 min; the upload→result part starts the real stack like
# `make load`), written to var/bench/bench-<time>.json. BENCH_ARGS: e.g. --quick, --skip-stack,
# --backend onnx, --compare last.
BENCH_ARGS ?=
bench: $(LOAD_STAMP)
	$(PY) -m bench $(BENCH_ARGS)
