# The two commands a newcomer needs: `make demo` and `make test`. Nothing but Python 3.11+ and git.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint check ci-services clean help

help:
	@echo "make demo   run web + worker + beat on http://127.0.0.1:8000 (SQLite + embedded broker)"
	@echo "make test   run the whole test suite (CI=true: on PostgreSQL + Redis, required)"
	@echo "make lint   ruff + migrations check"

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.prod: requirements/base.txt requirements/prod.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements/prod.txt
	touch $@

$(VENV)/.dev: requirements/dev.txt $(VENV)/.prod
	$(BIN)/python -m pip install -q -r requirements/dev.txt
	touch $@

demo: $(VENV)/.prod
	mkdir -p var
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py setup_demo
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

test: $(VENV)/.dev
	$(BIN)/python scripts/run_tests.py $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var/*.sqlite3* var/broker var/logs var/workspaces
