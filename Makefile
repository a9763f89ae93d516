# LOMS — two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/loms
# Tests never read a developer's .env, so they see the built-in defaults.
TEST_ENV := LOMS_ENV_FILE=/nonexistent

.PHONY: install run test test-postgres lint bench screenshots clean

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## Install, migrate, create the first admin on a fresh database, then serve web + django-q cluster.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	$(PY) manage.py serve

## Install and run the whole test suite (SQLite unless DATABASE_URL says otherwise).
test: install
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

## Style and static checks (ruff, migrations in step with the models).
lint: install
	$(PY) -m ruff check .
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run

## The same suite against the local PostgreSQL.
test-postgres: install
	$(TEST_ENV) DATABASE_URL=$(PG_TEST_URL) $(PY) -m pytest $(PYTEST_ARGS)

## Refresh the committed console screenshots in docs/screenshots (needs Chromium).
screenshots: install
	$(TEST_ENV) LOMS_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest tests/browser/test_screenshots.py -q

## Benchmarks: printed figures and bench/results/*.json (not part of the tests).
bench: install
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
