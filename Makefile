# The two commands: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint format clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	mkdir -p data
	$(BIN)/omi-rules serve --rules rules --db data/omi-rules.db --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check engine connectors triggers web tests
	$(BIN)/ruff format --check engine connectors triggers web tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format engine connectors triggers web tests
	$(BIN)/ruff check --fix engine connectors triggers web tests

# wrk drives the receiver in tests/test_bench.py; without it that section is skipped, loudly.
# Chromium (Debian's `chromium`) runs tests/browser; without it those tests fail.
# PostgreSQL (Debian's `postgresql`: initdb and pg_ctl) runs the tests of the PostgreSQL
# store (tests/postgres.py starts a throwaway server); without it they fail as root and in
# CI, and skip, loudly, otherwise.
test: $(STAMP) lint
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
		|| ([ "$$(id -u)" = 0 ] && (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
		|| (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null))) \
		|| echo "chromium not installed; apt-get install chromium (tests/browser fail without it)"
	command -v wrk >/dev/null || ([ "$$(id -u)" = 0 ] && (apt-get install -y -qq wrk >/dev/null 2>&1 \
		|| (apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null))) \
		|| echo "wrk not installed; apt-get install wrk (the bench test skips its receiver figures)"
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| ([ "$$(id -u)" = 0 ] && (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 \
		|| (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null))) \
		|| echo "postgresql not installed; apt-get install postgresql (tests of the PostgreSQL store fail without it)"
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Refresh constraints.txt: resolve pyproject's ranges afresh in a scratch venv, then freeze.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[test]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | sort > constraints.txt
	rm -rf .lock-venv
	@echo "constraints.txt refreshed; run make test, then commit it"
