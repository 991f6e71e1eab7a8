# IronLayer developer commands. `make demo` and `make test` are the README quick start.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ironlayer demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared_core functions function_app.py tests bench
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/plan_scale.py

clean:
	rm -rf $(VENV) .ironlayer
