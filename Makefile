# The two commands of the README: `make up` (Docker Compose) and `make test`. `make dev` runs the same system
# without Docker. Everything installs from this repository's own files.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := -e shared -e 'services/inference[cpu]' -e services/ingestion -e services/training -e services/gateway
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test compose-test lint format up up-gpu down dev demo bench models model-rhythm model-12lead clean

install: $(STAMP) node_modules/.installed
	scripts/install-test-tools.sh

$(STAMP): shared/pyproject.toml services/*/pyproject.toml requirements/constraints.txt requirements/dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (or set PYTHON=...)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements/constraints.txt $(PACKAGES) -r requirements/dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js 20 and npm (Azurite runs on it)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: install
	scripts/ensure-services.sh
	$(BIN)/pytest $(PYTEST_ARGS)

# `make up` for real, under a Docker engine (started as root if none answers), then the whole path through the
# gateway, a restart, scaling and `down -v` (scripts/compose-test.sh; docs/deploy.md). Not part of `make test`.
compose-test: install
	scripts/compose-test.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

up:
	scripts/init-env.sh
	docker compose up --build

up-gpu:
	scripts/init-env.sh
	docker compose -f compose.yaml -f compose.gpu.yaml up --build

down:
	docker compose down

# The same system without Docker: Azurite, migrations, the four services (honcho, Procfile). Ctrl-C stops it.
dev: install
	scripts/dev.sh

# On a running stack (`make dev` or `make up`): upload a PTB-XL slice as device blobs, ingest, train, classify.
DEMO_ARGS ?=
demo: install
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

# Benchmarks (bench/): writes bench/results/latest.{json,md} and the README's Benchmarks section. By default
# ingestion runs at 1k and 10k recordings and training's streamed input at 10k and 100k, to show how they grow.
BENCH_ARGS ?= --sizes ingestion.n=1000,10000 --sizes training.n=10000,100000
bench: install
	scripts/ensure-services.sh
	$(BIN)/python -m bench $(BENCH_ARGS)

# The bundled models (models/*.onnx + model cards), each reproduced with the project's own training pipeline.
models: model-rhythm model-12lead

model-rhythm: install
	scripts/ensure-services.sh
	services/training/scripts/bundled-model.sh rhythm-1lead

model-12lead: install
	scripts/ensure-services.sh
	services/training/scripts/bundled-model.sh normal-12lead

clean:
	rm -rf $(VENV) node_modules .pytest_cache
