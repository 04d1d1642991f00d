# Set-up and the main commands. `make run` and `make test` each build the virtual
# environment first when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow clean

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

clean:
	rm -rf $(VENV) runs data
