# livesettings — `make serve` runs the server on the embedded default, `make test` checks everything.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: serve test lint typecheck typecheck-js pytest soak bench clean fmt

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The JS packages (clients/js, clients/react) and their tools, from the committed lockfile.
$(NODE_STAMP): package.json package-lock.json clients/js/package.json clients/react/package.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

serve: $(STAMP)
	$(BIN)/livesettings serve

test: $(STAMP) $(NODE_STAMP) lint typecheck typecheck-js pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

typecheck-js: $(NODE_STAMP)
	node_modules/.bin/tsc --noEmit -p clients/js
	node_modules/.bin/tsc --noEmit -p clients/react

pytest: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# 30 minutes of mixed load with reconnects and a restart (LIVESETTINGS_SOAK_SECONDS to change).
soak: $(STAMP)
	$(BIN)/pytest -m slow tests/soak $(PYTEST_ARGS)

# W1-W6 and PocketBase, about 10 minutes; BENCH_ARGS="--quick" or "--workloads W2,W3" for less.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

.PHONY: bench-multinode
bench-multinode: $(STAMP)
	$(BIN)/python bench/multinode.py $(BENCH_ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) node_modules build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
