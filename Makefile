# The front door. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= gcp,serve,feast,dev
STAMP := $(VENV)/.installed
# Where `make run` writes its data, artifacts, report and registry.
WORK_DIR ?= work_dir
PYTEST_ARGS ?=

.PHONY: help install run test test-fast lint format benchmark clean
.PHONY: image test-containers

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): setup.py constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $(STAMP)

install: $(STAMP)  ## create or refresh the virtual environment with the pinned dependencies

run: $(STAMP)  ## run the whole pipeline locally on the built-in simulated data
	$(BIN)/ranker run --work-dir $(WORK_DIR)

test: $(STAMP)  ## lint, then every test (the command CI runs)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)  ## the tests that need no training run or container
	$(BIN)/python -m pytest -m "not slow and not container" $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

benchmark: $(STAMP)  ## every benchmark in benchmarks/ (minutes; results go to docs/benchmarks.md by hand)
	$(BIN)/python -m benchmarks.run_all

image:  ## build the project and serving images (infra/build_images.sh; docs/infrastructure.md)
	infra/build_images.sh

test-containers: $(STAMP)  ## build the images and run the container tests (needs a Docker engine)
	$(BIN)/python -m pytest -m container tests/containers $(PYTEST_ARGS)

clean:  ## remove the virtual environment and local outputs
	rm -rf $(VENV) $(WORK_DIR) .pytest_cache .ruff_cache
