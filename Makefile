# Two entry points for a fresh machine: `make run` (main job) and `make test` (whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUNDLE := bundles/ml-latest-small-ease

.PHONY: install run serve test lint bench clean

# scikit-sparse (under the sansa model) compiles against SuiteSparse's CHOLMOD headers:
# installed from Debian when missing (as root, or through sudo).
SUITESPARSE_HEADER := /usr/include/suitesparse/cholmod.h

$(STAMP): pyproject.toml
	@test -f $(SUITESPARSE_HEADER) || { \
	    sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	    $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq libsuitesparse-dev >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,generative-llm]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/whyrec data fetch ml-latest-small
	$(BIN)/whyrec train --data ml-latest-small --model ease --out $(BUNDLE)
	$(BIN)/whyrec recommend --bundle $(BUNDLE) --user 1 -k 10 --explain
	echo "a funny animated film from the 90s, like Toy Story, nothing scary" | $(BIN)/whyrec chat --bundle $(BUNDLE) --db bundles/sessions.sqlite
	@echo
	@echo "Next, the HTTP API and the chat page on http://127.0.0.1:8000/ (Ctrl-C stops it):"
	@echo "  make serve    # runs: $(BIN)/whyrec serve --bundle $(BUNDLE) --db bundles/sessions.sqlite"

# Serves until interrupted, so it is its own target: `make run` must terminate.
serve: install
	test -f $(BUNDLE)/bundle.json || $(MAKE) run
	$(BIN)/whyrec serve --bundle $(BUNDLE) --db bundles/sessions.sqlite

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: install lint
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/bench_ease.py
	$(BIN)/python benchmarks/bench_service.py
	command -v wrk >/dev/null && $(BIN)/python benchmarks/bench_load.py || echo "bench_load.py skipped: needs wrk"

clean:
	rm -rf $(VENV) bundles .pytest_cache .ruff_cache
