# AlphaOps: `make run` (the main job) and `make test` (the whole suite) set up everything they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser-deps run test bench bench-models mlflow-ui airflow-ui stack-up stack-down stack-status clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[test,text]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/alphaops run

# The browser tests (marker `browser`) drive Debian's chromium through Playwright. It is
# installed here when it is missing and apt-get can run (as root); elsewhere they skip and say why.
CHROMIUM := /usr/bin/chromium

browser-deps:
	@if [ ! -x $(CHROMIUM) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium for the browser tests (apt-get)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
	  || echo "could not install chromium with apt-get: the browser tests will skip"; \
	fi

# pytest's exit code 5 means no test ran: that is a failure here, never a pass.
# Two workers (pytest-xdist), each running whole test files, so a module's fixture is built once;
# the suite waits on subprocesses (Airflow, MLflow, browsers) much of the time. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: install browser-deps
	@$(BIN)/python -m pytest -q -p no:cacheprovider --durations=40 -n $(TEST_WORKERS) --dist loadfile; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

bench: install
	$(BIN)/alphaops bench features
	$(BIN)/alphaops bench serving

# Every family on arch's real samples and the synthetic market, 3 seeds: docs/benchmarks.md (+ .json, _gains.png).
# Long (hours on 2 cores); BENCH_ARGS='--quick' for the CI subset, '--families volatility' for one family.
bench-models: install
	$(BIN)/alphaops bench models $(BENCH_ARGS)

mlflow-ui: install
	$(BIN)/alphaops ui mlflow

AIRFLOW_UI_PORT ?= 8080

airflow-ui: install
	$(BIN)/alphaops ui airflow --port $(AIRFLOW_UI_PORT)

# The production topology on this machine without Docker (PostgreSQL and Redis must run here).
stack-up: install
	$(BIN)/alphaops stack up

stack-status:
	$(BIN)/alphaops stack status

stack-down:
	$(BIN)/alphaops stack down

clean:
	rm -rf .alphaops
