# `make run` trains on the shipped sample with `dvc repro`; `make test` runs the test suite.
# Both create the environment in .venv from requirements.lock first when needed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

# Telemetry of the tools in the environment stays off; .venv/bin/activate sets the same.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
TELEMETRY_OFF := MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 DVC_NO_ANALYTICS=1 \
	GX_ANALYTICS_ENABLED=false PREFECT_SERVER_ANALYTICS_ENABLED=false

.PHONY: env run test bench lock clean

env: $(INSTALLED)

$(INSTALLED): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	grep -q DVC_NO_ANALYTICS $(BIN)/activate || echo 'export $(TELEMETRY_OFF)' >> $(BIN)/activate
	touch $(INSTALLED)

# The raw CSV comes from the DVC remote when it holds it, else from the shipped sample.
run: $(INSTALLED)
	test -f data/raw/fer2013.csv || dvc pull --quiet data/raw/fer2013.csv.dvc 2>/dev/null || fer data use-sample
	dvc repro
	fer summary

test: $(INSTALLED)
	python -m pytest -ra

bench: $(INSTALLED)
	python bench/run.py

# Re-resolve requirements.lock after changing dependencies in pyproject.toml.
lock: $(INSTALLED)
	python -m pip install --quiet uv
	python -m uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --generate-hashes --no-header -o requirements.lock

clean:
	rm -rf data/prepared models reports mlflow.db mlartifacts
