# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
OUT ?= rdex-out
# Installing is skipped when rdex (and, for tests, its dev extras) is already importable from this checkout.
INSTALLED := $(PYTHON) -c "import rdex, pathlib, sys; sys.exit(0 if pathlib.Path(rdex.__file__).resolve().is_relative_to(pathlib.Path('src').resolve()) else 1)" 2>/dev/null

.PHONY: install install-dev demo test test-slow test-all lint typecheck bench docs clean

install:
	@$(INSTALLED) || $(PIP) install -e .

install-dev:
	@($(INSTALLED) && $(PYTHON) -c "import pytest, ray, hypothesis, playwright, quantus, transformers, mkdocs_jupyter" 2>/dev/null) || $(PIP) install -e ".[dev,dist,quantus,hf,docs]"

demo: install
	$(PYTHON) -m rdex demo --out $(OUT)

test: install-dev
	$(PYTHON) -m pytest -q -m "not slow and not gpu" --durations=10

test-slow: install-dev
	$(PYTHON) -m pytest -q -m "slow"

test-all: install-dev
	$(PYTHON) -m pytest -q

lint: install-dev
	$(PYTHON) -m ruff check src tests benchmarks
	$(PYTHON) -m ruff format --check src tests benchmarks

typecheck: install-dev
	$(PYTHON) -m mypy

bench: install
	$(PYTHON) -m rdex bench --out $(OUT)/bench

# The documentation site → site/ (tutorials and figures are computed while it builds).
docs:
	@($(INSTALLED) && $(PYTHON) -c "import mkdocs_jupyter, mkdocstrings_handlers.python" 2>/dev/null) || $(PIP) install -e ".[docs]"
	$(PYTHON) -m mkdocs build --strict

clean:
	rm -rf $(OUT) build dist site .pytest_cache .mypy_cache
