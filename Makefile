# Two commands set everything up on a fresh machine:
#   make demo   - create .venv, install castinspect, judge the bundled sample photos
#   make test   - the same install, the system packages the tests use for real (PostgreSQL,
#                 Chromium; scripts/system-deps.sh), then the test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-deps demo test bench-train clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(BIN)/castinspect demo --out castinspect-demo

system-deps:
	scripts/system-deps.sh

# CASTINSPECT_REQUIRE_SYSTEM_TESTS=1: a missing PostgreSQL or Chromium fails the run instead of
# skipping its tests.
test: install system-deps
	CASTINSPECT_REQUIRE_SYSTEM_TESTS=1 $(BIN)/python -m pytest

# Retrain the bundled model's recipe (about 20 minutes on 2 cores: its own 10-epoch schedule); not part of CI.
bench-train: install
	$(BIN)/castinspect train ../shared/data/casting_data --config benchmarks/bundled_recipe.yaml --no-search --budget 40m --out runs/bundled

clean:
	rm -rf $(VENV) castinspect-demo .pytest_cache
