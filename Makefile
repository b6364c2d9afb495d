# One target per chore. `make demo` and `make test` work from a clean checkout.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest bench docs reference clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.installed-dev: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/.installed $@

$(BIN)/.installed-bench: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(BIN)/.installed $(BIN)/.installed-dev $@

$(BIN)/.installed-docs: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[docs]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/asynctrack demo
	$(BIN)/asynctrack report sqlite:///track.db -o report.html --title "asynctrack demo"
	@echo "Open report.html in a browser: file://$(CURDIR)/report.html (or: $(BIN)/python -m webbrowser -t report.html)"

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src
	$(BIN)/lint-imports --no-cache

typecheck: $(BIN)/.installed-dev
	$(BIN)/mypy

pytest: $(BIN)/.installed-dev
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(BIN)/.installed-bench
	$(BIN)/python -m benchmarks

# The manual (docs/, mkdocs.yml) into site/; every warning is an error (strict: true).
docs: $(BIN)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The options table of docs/configuration.md, regenerated from the option declarations
# (src/asynctrack/_config/options.py); tests/config/test_config_types.py fails while it is stale.
reference: $(BIN)/.installed
	$(BIN)/python -m asynctrack._config --write docs/configuration.md

clean:
	rm -rf $(VENV) build dist site .mypy_cache .ruff_cache
