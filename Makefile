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

.PHONY: env run test bench serve lock clean

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
	python bench/serving.py

# Serve the champion over HTTP (README, "Serving"). The scoring server starts
# `uvicorn` from PATH, which the export above points at .venv/bin. A
# MLFLOW_TRACKING_URI set in the environment wins over the project's store.
SERVE_MODEL ?= models:/fer-emotion-cnn@champion
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 5001
MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db

serve: $(INSTALLED)
	MLFLOW_TRACKING_URI='$(MLFLOW_TRACKING_URI)' KERAS_BACKEND=tensorflow \
		mlflow models serve -m "$(SERVE_MODEL)" --env-manager local -h $(SERVE_HOST) -p $(SERVE_PORT)

# A Prefect server on 127.0.0.1:$(PREFECT_PORT) and the runner of deployment
# fer/train, in the background, with PREFECT_HOME and logs under .prefect/
# (README, "Orchestration with Prefect").
PREFECT_PORT ?= 4200

.PHONY: orchestrator orchestrator-stop

orchestrator: $(INSTALLED)
	fer orchestrate start --port $(PREFECT_PORT)

orchestrator-stop:
	fer orchestrate stop

# Re-resolve requirements.lock after changing dependencies in pyproject.toml.
lock: $(INSTALLED)
	python -m pip install --quiet uv
	python -m uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --generate-hashes --no-header -o requirements.lock

clean:
	rm -rf data/prepared models reports mlflow.db mlartifacts
