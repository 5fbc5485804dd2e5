# The two commands: `make demo` and `make test`. Everything else here serves them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
PYTEST_WORKERS ?= 2

.PHONY: demo test install db lint format bench browser-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet ".[dev]"
	rm -rf build *.egg-info
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## Start the embedded PostgreSQL (unless DATABASE_URL is set), create the database and the
## runtime role, migrate as the owner.
db: install
	$(PY) manage.py bootstrap_db
	$(PY) manage.py migrate --database owner --noinput

## The whole system on 127.0.0.1: Stripe stand-in, web server, django-q2 cluster. Ctrl-C stops it.
## The demo's sales are minutes old: make them available for payout at once (default 48 hours).
demo: export PAYOUTS_AVAILABILITY_DELAY_HOURS ?= 0
demo: db
	$(PY) manage.py seed_demo
	$(PY) manage.py run_demo

## Debian's chromium for the browser tests (only as root, only when missing).
browser-deps:
	@if [ -d tests/browser ] && ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
		else echo "browser tests need Debian's chromium: sudo apt-get install chromium"; fi; \
	fi

## The whole suite on a real PostgreSQL, as the runtime role, in parallel.
test: install browser-deps
	TREASURY_CACHE_DIR=$(CURDIR)/.data/test-cache $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	$(PY) -c "from pathlib import Path; from treasury.embedded_postgres import stop_embedded_postgres; stop_embedded_postgres(Path('.data'))" || true
	rm -rf .data

## Benchmarks on scratch databases (never in CI, never asserting): ratios against pgbench,
## raw psycopg and django-hordak. `make bench QUICK=1` is the short run. See benchmarks/README.md.
BENCH_STAMP := $(VENV)/.bench-$(shell cksum < pyproject.toml | cut -d' ' -f1)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet ".[dev,bench]"
	rm -rf build *.egg-info
	rm -f $(VENV)/.bench-*
	touch $(BENCH_STAMP)

bench: db $(BENCH_STAMP)
	$(PY) benchmarks/run.py $(if $(QUICK),--quick) $(BENCH_ARGS)
