# The two commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test faults bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: $(BIN)/python requirements.txt
	@echo "==> installing requirements.txt into $(VENV)"
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	@echo "==> installing requirements-dev.txt into $(VENV)"
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@

demo: $(VENV)/.runtime
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py demo

# Programs the tests run, as command=Debian package: installed when missing and root.
TEST_PROGRAMS := chromium=chromium docker-compose=docker-compose prometheus=prometheus promtool=prometheus

# PostgreSQL and Redis are started by the tests' session fixture when they are down.
test: $(VENV)/.dev
	@tools/ensure-debian-packages $(TEST_PROGRAMS)
	@echo "==> import contracts (.importlinter)"
	PYTHONPATH=. $(BIN)/lint-imports --no-cache
	@echo "==> types (mypy.ini: monitor/ and dashboards/, zero errors)"
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault suite: the stack as processes with a PostgreSQL, Redis and broker of its own,
# then worker kills, receiver errors, outages (README "Operations").
faults: $(VENV)/.dev
	$(BIN)/python -m pytest -m faults -s -p no:randomly tests/test_faults.py

bench: $(VENV)/.dev
	$(BIN)/python bench/poll.py
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/flow.py
	$(BIN)/python bench/pathways.py --events 200000
	$(BIN)/python bench/timelag.py
	$(BIN)/python bench/scale.py --runs 3

clean:
	rm -rf $(VENV) var/*.sqlite3* var/celery staticfiles
