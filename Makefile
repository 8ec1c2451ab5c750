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

# Ports: APP_PORT (5000) and EMULATOR_PORT (54321), from the environment or .env.
dev: $(READY)  ## the app on http://localhost:5000, on the local emulator unless .env names a project
	PYTHON=$(PY) scripts/dev

emulator: $(READY)  ## only the emulator of `make dev` (same providers and settings), port 54321
	PYTHON=$(PY) scripts/dev emulator

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
