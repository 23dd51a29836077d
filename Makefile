# Lakehouse for Learning — the two commands are `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: setup stack-up stack-down stack-status airflow airflow-down demo smoke test unit lint bench lock clean

setup:  ## Python environment (reused when requirements.lock is unchanged)
	@bash deploy/bootstrap.sh

stack-up: setup  ## Install what is missing and start PostgreSQL, Redis, Kafka, MinIO
	@$(PY) -m cli stack up

stack-down:  ## Stop exactly what stack-up started
	@if [ -x $(PY) ]; then $(PY) -m cli stack down; else echo "no environment: nothing to stop"; fi

stack-status:
	@$(PY) -m cli stack status

airflow: stack-up  ## Start Airflow (api-server, scheduler, dag-processor) on loopback; prints the UI and login
	@$(PY) -m cli airflow up

airflow-down:  ## Stop exactly what `make airflow` started
	@if [ -x $(PY) ]; then $(PY) -m cli airflow down; else echo "no environment: nothing to stop"; fi

demo: stack-up  ## Set up from nothing and run the platform end to end
	@$(PY) -m cli demo

smoke: stack-up
	@$(PY) -m cli smoke

test: stack-up  ## Set up from nothing, lint, and run unit + integration tests against the real services
	@$(MAKE) --no-print-directory lint
	@$(PY) -m pytest tests/unit tests/integration tests/reliability --durations=12

unit: setup
	@$(PY) -m pytest tests/unit

lint: setup
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench: stack-up
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

lock:  ## Recompile requirements.lock from requirements.in
	@bash deploy/bootstrap.sh >/dev/null
	@$${LAKEHOUSE_CACHE_DIR:-$$HOME/.cache/lakehouse}/bootstrap/bin/uv pip compile -q -p 3.11 requirements.in -o requirements.lock

clean: stack-down
	rm -rf .lakehouse
