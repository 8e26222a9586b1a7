# The README's two commands are `make run` and `make test`; both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint typecheck importlint pytest bench clean setup messages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	./scripts/system-deps.sh
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The whole system on this machine (server on SQLite, a local agent), data in .garrison/local/, until Ctrl-C.
run: $(STAMP)
	$(BIN)/python scripts/run_local.py

# The engine alone: a sample tree with EICAR hidden in nested containers, scanned with `garrison scan`.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

importlint: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest -n 2 -q --durations=15

test: lint typecheck importlint pytest

bench: $(STAMP)
	./scripts/system-deps.sh yara clamav-daemon
	$(BIN)/python bench/engine.py

# The console's text: extract it from the templates and code, and merge it into the vi and en catalogs (.po files
# are committed and compiled in memory when the server starts; translate the new entries of vi, then commit).
CONSOLE := src/garrison/server/console
messages: $(STAMP)
	$(BIN)/pybabel -q extract -F $(CONSOLE)/babel.cfg -k N_ --no-location --sort-output --project Garrison \
		--copyright-holder "The Garrison team" -o $(CONSOLE)/locales/messages.pot $(CONSOLE)
	$(BIN)/pybabel -q update -i $(CONSOLE)/locales/messages.pot -d $(CONSOLE)/locales --no-wrap --ignore-obsolete

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
