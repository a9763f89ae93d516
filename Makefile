# LOMS — two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# Dependencies (README.md "Dependencies"): pip itself, the runtime set (what a server installs) and the
# dev set (runtime + test, lint and benchmark tools), every package pinned with hashes. A stamp per set,
# named after the checksum of its files, reinstalls only when they change.
RUNTIME_STAMP := $(VENV)/.installed-runtime-$(shell cat requirements-pip.txt requirements.txt | cksum | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cat requirements-pip.txt requirements-dev.txt | cksum | cut -d' ' -f1)
PIP_INSTALL := $(PY) -m pip install --quiet --require-hashes
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/loms
# Tests never read a developer's .env, so they see the built-in defaults.
TEST_ENV := LOMS_ENV_FILE=/nonexistent

.PHONY: install install-dev run test test-postgres lint bench screenshots clean

$(RUNTIME_STAMP): requirements-pip.txt requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements-pip.txt
	$(PIP_INSTALL) -r requirements.txt
	@rm -f $(VENV)/.installed-runtime-* && touch $@

$(DEV_STAMP): requirements-pip.txt requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements-pip.txt
	$(PIP_INSTALL) -r requirements-dev.txt
	@rm -f $(VENV)/.installed-dev-* && touch $@

## The runtime set only (what deploy/ and a server use).
install: $(RUNTIME_STAMP)

## The runtime set plus the test, lint and benchmark tools.
install-dev: $(DEV_STAMP)

## Install, migrate, create the first admin on a fresh database, then serve web + django-q cluster.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	$(PY) manage.py serve

## Install and run the whole test suite (SQLite unless DATABASE_URL says otherwise).
test: install-dev
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

## Style and static checks (ruff lint and format, migrations in step with the models).
lint: install-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run

## The same suite against the local PostgreSQL.
test-postgres: install-dev
	$(TEST_ENV) DATABASE_URL=$(PG_TEST_URL) $(PY) -m pytest $(PYTEST_ARGS)

## Refresh the committed console screenshots in docs/screenshots (needs Chromium).
screenshots: install-dev
	$(TEST_ENV) LOMS_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest tests/browser/test_screenshots.py -q

## Benchmarks: printed figures and bench/results/*.json (not part of the tests).
bench: install-dev
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
