# Two commands matter: `make demo` and `make test`. Both work on a fresh machine with Python 3.11:
# they create .venv and install everything they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SOURCE_FAKER := $(VENV)/source-faker/bin/source-faker
# A real Airbyte source for integration_tests/test_platform.py; it needs airbyte-cdk 6, so it
# lives in a virtualenv of its own.
SOURCE_FAKER_VERSION := 7.2.1
# Release 0.3.0, which `make bench` measures CPU per record against (docs/performance.md).
RELEASE_0_3_0 := 03444d5

.PHONY: test demo bench lint format install clean

install: $(INSTALLED)

$(INSTALLED): setup.py destination_heap_analytics/_version.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[tests,dev]'
	touch $(INSTALLED)

$(SOURCE_FAKER): $(INSTALLED)
	$(BIN)/uv venv --quiet --allow-existing --python $(PYTHON) $(VENV)/source-faker
	$(BIN)/uv pip install --quiet --python $(VENV)/source-faker/bin/python \
		airbyte-source-faker==$(SOURCE_FAKER_VERSION)

test: $(INSTALLED) $(SOURCE_FAKER) lint
	$(BIN)/python -m pytest -m "not image_tests" -q

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: $(INSTALLED)
	$(BIN)/python -m integration_tests.demo

bench: $(INSTALLED)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/compare_revisions.py $(RELEASE_0_3_0) --records 20000 --rounds 3

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache secrets/sandbox_config.json bench/out
