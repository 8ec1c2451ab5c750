# Two commands for a fresh machine: `make dev` runs the app, `make test` runs every test.
# Each sets up its own virtualenv from the pinned requirements first.
VENV ?= .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready

.PHONY: dev test bench bench-smoke lint emulator clean

$(READY): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(READY)

dev: $(READY)  ## the app on http://127.0.0.1:5000, on the local emulator unless .env names a project
	PYTHON=$(PY) scripts/dev

emulator: $(READY)  ## only the emulator, on http://127.0.0.1:54321
	$(PY) -m emulator

test: $(READY)  ## every test: unit, conformance, browser, short load
	$(PY) -m pytest

bench: $(READY)  ## the full benchmark (minutes); results in bench/results/
	$(PY) -m bench

bench-smoke: $(READY)
	$(PY) -m bench --smoke

lint: $(READY)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .emulator .pytest_cache bench/results
