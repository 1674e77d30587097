# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment it needs (Python 3.10-3.12).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/denoise demo --workdir demo-output --overwrite

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=15

lint: $(BIN)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean-venv:
	rm -rf $(VENV)
