"""One Prefect task per stage, each a thin call to `fer_pipeline.pipeline.run_stage`.

`validate` and `prepare` are cached (see `flows.caching`); the tasks that write
to MLflow retry transient failures only (see `flows.retries`). The stages read
and write paths relative to the working directory, which is the project root.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from fer_pipeline import tracking
from fer_pipeline.params import Params
from fer_pipeline.pipeline import run_stage
from flows import caching, linking
from flows.retries import MLFLOW_RETRIES, TRAIN_RETRIES, retry_if_transient

# Cached results are small JSON files under PREFECT_HOME/storage (`.prefect/`
# with `make orchestrator`).
CACHED = {"persist_result": True, "result_serializer": "json"}


@task(name="validate", cache_key_fn=caching.cache_key("validate"), **CACHED)
def validate(params: Params) -> dict[str, Any]:
    """Check the raw CSV with the great-expectations suite and write `reports/validation.json`."""
    report = run_stage("validate", params)
    return caching.with_fingerprint("validate", params, asdict(report))


@task(name="prepare", cache_key_fn=caching.cache_key("prepare"), **CACHED)
def prepare(params: Params) -> dict[str, Any]:
    """Split the raw CSV into train/val/test arrays under `paths.prepared_dir`."""
    summary = run_stage("prepare", params)
    return caching.with_fingerprint("prepare", params, summary)


@task(name="train", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient, **TRAIN_RETRIES)
def train(params: Params) -> dict[str, str]:
    """Fit the model and log it to a new MLflow run."""
    result = run_stage("train", params)
    return {"run_id": result["run_id"], "model_uri": result["model_uri"]}


@task(name="link-mlflow-run", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient, **MLFLOW_RETRIES)
def link_mlflow_run(params: Params) -> str:
    """Tag the MLflow run with this flow run and attach a link to it; return the MLflow run's address."""
    return linking.link_mlflow_run(tracking.read_run_file(params.paths.model_dir))


@task(name="evaluate", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient, **MLFLOW_RETRIES)
def evaluate(params: Params) -> dict[str, Any]:
    """Score the model on each split and log the metrics to the MLflow run."""
    return run_stage("evaluate", params)


@task(name="register", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient, **MLFLOW_RETRIES)
def register(params: Params) -> dict[str, Any]:
    """Add a registered model version and move the champion alias if it beats the champion on val."""
    # NOTE: a retry after a failure that follows `register_model` adds one more version.
    return run_stage("register", params)
