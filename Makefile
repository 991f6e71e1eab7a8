# IronLayer developer commands. `make demo` and `make test` are the README quick start; `make package` builds the
# Functions app's deployment zip and `make checkov` scans infra/terraform (docs/deploy.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Azure's Python worker (azure-functions-runtime) runs on Python 3.13; the app is indexed with it in a venv of its own.
PY313 ?= $(shell for p in $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python 2>/dev/null) python3.13; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo $$p; break; }; done)
WORKER_VENV := .venv-worker
WORKER_STAMP := $(WORKER_VENV)/.installed
# checkov has a virtual environment of its own: it pins a fork of python-hcl2 that the dev tools' one clashes with.
CHECKOV_VENV := .ci/checkov-venv
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30

AZURITE := .ci/node_modules/.bin/azurite-blob

.PHONY: demo test lint bench clean worker-venv requirements package checkov azurite

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[cli,dev]'
	touch $(STAMP)

$(WORKER_STAMP): pyproject.toml .ci/worker-requirements.txt
	@test -n "$(PY313)" || { echo "Python 3.13 is required for the Azure worker check (set PY313=/path/to/python3.13)" >&2; exit 1; }
	$(PY313) -m venv $(WORKER_VENV)
	$(WORKER_VENV)/bin/python -m pip install -q --upgrade pip
	$(WORKER_VENV)/bin/python -m pip install -q -r .ci/worker-requirements.txt -e .
	touch $(WORKER_STAMP)

worker-venv: $(WORKER_STAMP)

# Azurite (the Azure Blob Storage emulator the integration tests start), pinned by .ci/package-lock.json.
$(AZURITE):
	@command -v npm >/dev/null || { echo "make test needs Node.js (npm) to install Azurite: install Node.js 18 or later" >&2; exit 1; }
	npm ci --prefix .ci --no-audit --no-fund --loglevel=error >/dev/null

azurite: | $(AZURITE)

demo: $(STAMP)
	$(BIN)/ironlayer demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared_core functions function_app.py tests bench infra
	$(BIN)/lint-imports --no-cache

# Tests use the PostgreSQL on 127.0.0.1:5432 (IRONLAYER_TEST_DATABASE_URL), or an embedded one when none answers.
test: lint $(WORKER_STAMP) | $(AZURITE)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/plan_scale.py

# requirements.txt (what Azure's remote build installs) from pyproject.toml's runtime dependencies.
requirements:
	$(PY) infra/requirements_txt.py

# dist/ironlayer-functionapp.zip: the app's sources, host.json and requirements.txt, less what .funcignore leaves out.
package:
	$(PY) infra/package_app.py

$(CHECKOV):
	$(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q 'checkov==$(CHECKOV_VERSION)'

# Zero failed checks; a check that does not apply is skipped in the Terraform with `#checkov:skip=ID:reason`.
checkov: | $(CHECKOV)
	$(CHECKOV) -d infra/terraform --framework terraform --skip-download --compact --quiet

# Stop the embedded PostgreSQL servers first (the demo's and this checkout's), then remove what was made.
clean:
	-@[ ! -x $(BIN)/ironlayer ] || [ ! -d .ironlayer/demo/repo ] || $(BIN)/ironlayer db stop .ironlayer/demo/repo
	-@[ ! -x $(BIN)/ironlayer ] || $(BIN)/ironlayer db stop
	rm -rf $(VENV) $(WORKER_VENV) .ironlayer dist "$$(git rev-parse --git-common-dir 2>/dev/null || echo .git)/ironlayer"
