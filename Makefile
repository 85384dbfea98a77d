# edt-import — developer entry points (design.md §3). Recipes run in bash; the venv is .venv.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test files are spread over three workers per two cores (each file keeps its fixtures in one process): a
# third of a test's time is spent waiting on processes, brokers and browsers. The files marked `long` are
# handed out first (tests/conftest.py), then the others in collection order. Measured here (2 cores):
# 2 workers 9:02, 3 workers 6:32, 4 workers 6:25 with timing tests failing under the contention (then
# 4:36 with 3 once the resilience kills moved to the fault suite).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n * 3 / 2 > 1 ? n * 3 / 2 : 1 )))

.PHONY: help venv migrate run run-distributed nginx check-services test test-faults test-real bench bench-herd lint

help:
	@echo "make run              embedded all-in-one on 127.0.0.1:8000 (SQLite, in-process bus, demo site)"
	@echo "make run-distributed  six services on RabbitMQ + PostgreSQL behind nginx on 127.0.0.1:8000"
	@echo "make test             unit, integration and e2e tests (needs PostgreSQL and RabbitMQ)"
	@echo "make test-faults      the fault suite: kills, broker and database restarts, poison messages (docs/reliability.md)"
	@echo "make test-real        the real exports through the pipeline (needs them: tests/fixtures/real/README.md)"
	@echo "make bench            the benchmarks, each with its floor and PASS/FAIL"
	@echo "make bench-herd       the 08:00 herd: 300 sites on the distributed product, with the scale-out table"
	@echo "make lint             ruff + mypy + the import contracts (lint-imports)"
	@echo "make migrate          bring EDT_DATABASE_URL (default: the embedded SQLite file) to the latest schema"
	@echo "make venv             create .venv and install the project (again only when pyproject.toml changed)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	if [ ! -x $(BIN)/python ]; then $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

migrate: venv
	$(BIN)/python -m deploy.migrate

run: venv migrate
	$(BIN)/python -m deploy.run

# nginx from Debian packages; installed on demand when we may (root).
nginx:
	@if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y nginx-light || apt-get install -y nginx; \
	  else echo "nginx missing: run 'sudo apt-get install -y nginx-light'" >&2; exit 1; fi; \
	fi

run-distributed: venv nginx
	$(BIN)/python -m deploy.distributed

check-services: venv
	$(BIN)/python -m deploy.check_services

test: venv check-services
	$(BIN)/python -m pytest -p no:cacheprovider -q -n $(TEST_WORKERS) --dist loadfile \
	  --no-loadscope-reorder tests/e2e tests/integration tests/unit $(PYTEST_ARGS)

# Distributed mode on a private RabbitMQ node and PostgreSQL cluster the suite starts and removes; prints the
# table of faults (fault, runs, imports, lost, duplicated, result). Not part of `make test`.
test-faults: venv nginx
	$(BIN)/python -m pytest -p no:cacheprovider -q -s tests/faults $(PYTEST_ARGS)

# Real exports are third-party files, not in the repository: EDT_REAL_CORPUS (default tests/fixtures/real).
test-real: venv
	$(BIN)/python -m pytest -p no:cacheprovider -q tests/real $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m tests.bench

bench-herd: venv nginx check-services
	$(BIN)/python -m tests.bench.herd $(HERD_ARGS)

lint: venv
	$(BIN)/ruff check . && $(BIN)/mypy shared services deploy && $(BIN)/lint-imports --no-cache
