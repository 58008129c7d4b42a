# The two commands: `make demo` and `make test`. Both set up whatever is missing first.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test lint typecheck unit up down status bench chaos clean

setup:
	@WANT_CHROMIUM=$(WANT_CHROMIUM) bash localdev/bootstrap.sh

## demo: start the local stack, run real restores end to end, print what happened, stop everything
demo: setup
	$(PY) -m localdev.demo

## test: ruff, mypy (strict on restore_core/), then the whole pytest suite, on PYTEST_WORKERS processes (pytest-xdist,
## one local stack per worker, a test file stays on one worker). The suite mostly waits on real restores and timers,
## so 3 workers fit 2 cores; PYTEST_WORKERS=0 runs it in this process.
PYTEST_WORKERS ?= 3
test: WANT_CHROMIUM := 1
test: setup lint typecheck
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .

typecheck: setup
	$(PY) -m mypy restore_core function_app.py tests/unit/fakes.py

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

## up/down/status: the local stack in the background for manual use (.local/stack.env has the endpoints)
up: setup
	$(PY) -m localdev.stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m localdev.stack down; fi

status: setup
	$(PY) -m localdev.stack status

## bench / chaos: benchmarks and the fault campaign (on demand, not part of `make test`)
bench: setup
	$(PY) -m bench.run $(BENCH_ARGS)

chaos: setup
	$(PY) -m bench.chaos $(CHAOS_ARGS)

clean: down
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache
