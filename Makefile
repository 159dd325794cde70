# Set-up and everyday commands. A fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# Prefect runs without a server here: keep it quiet and offline (flows/__init__.py sets the same).
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_TASKS_DISABLE_CACHING ?= true

.PHONY: demo test test-fast lint check lock clean

## demo: install, then run the main job (PINs + e-mails to a local Maildir) on data/samples/
## (the brands' mandatory dates are past, so the demo says --after-deadline; the peppers and
## seal keys are the published DEMO-ONLY ones of data/samples/demo-keys/, and the run says so)
demo: $(VENV)/.installed
	set -a && . ./data/samples/demo-keys/demo.env && set +a && \
	$(BIN)/rollout run --exports data/samples --state-dir .rollout --after-deadline

## test: install, then run the whole test suite
test: $(VENV)/.installed
	$(BIN)/pytest

## test-fast: the tests that start no Prefect engine and no `rollout` process (a minute or so)
test-fast: $(VENV)/.installed
	$(BIN)/pytest -m "not slow"

## lint: ruff and mypy, as CI runs them
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: lint test

# The venv is rebuilt whenever the lock file changes; uv installs the exact pinned set.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

## lock: re-resolve requirements.lock from the ranges in pyproject.toml
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .rollout .pytest_cache .mypy_cache .ruff_cache
