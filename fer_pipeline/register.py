"""Stage `register`: add the trained model to the MLflow Model Registry and move the champion alias.

In: `models/run.json`, `reports/metrics.json`. Out: a new version of the
registered model `mlflow.registered_model`, and `reports/registry.json`. The
alias `mlflow.champion_alias` moves to the new version only when its val
accuracy beats the current champion's, or when there is no champion yet.
Run it with `fer register`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fer_pipeline import tracking
from fer_pipeline.files import write_json_atomic
from fer_pipeline.params import Params
from fer_pipeline.reports import METRICS_FILE, REGISTRY_FILE

log = logging.getLogger(__name__)

SELECTION_METRIC = "val/accuracy"


def run_register(params: Params, root: str | Path = ".") -> dict[str, Any]:
    """Register the run's model and move the champion alias if it is better on val."""
    tracking.configure(params.mlflow.experiment, root)
    run_record = tracking.read_run_file(params.paths.model_dir)
    val_accuracy = _val_accuracy(Path(params.paths.reports_dir) / METRICS_FILE)

    name = params.mlflow.registered_model
    alias = params.mlflow.champion_alias
    client = MlflowClient()

    version = mlflow.register_model(
        run_record["model_uri"], name, tags={SELECTION_METRIC: f"{val_accuracy:.6f}", "run_id": run_record["run_id"]}
    )
    champion = _current_champion(client, name, alias)
    champion_accuracy = _version_accuracy(client, champion) if champion else None
    # The champion's accuracy comes from a tag rounded to 6 decimals: compare
    # at that precision, so an equal model does not take the alias.
    promoted = champion_accuracy is None or round(val_accuracy, 6) > champion_accuracy
    if promoted:
        client.set_registered_model_alias(name, alias, version.version)
        log.info("%s version %s is the new %s (val accuracy %.4f, previous %s)", name, version.version, alias, val_accuracy, champion_accuracy)
    else:
        log.info(
            "%s version %s keeps no alias: val accuracy %.4f does not beat %s version %s (%.4f)",
            name, version.version, val_accuracy, alias, champion.version, champion_accuracy,
        )

    with mlflow.start_run(run_id=run_record["run_id"]):
        mlflow.set_tags({"registered_model": name, "registered_model_version": version.version})

    record = {
        "registered_model": name,
        "version": int(version.version),
        "val_accuracy": val_accuracy,
        "alias": alias,
        "champion_version": int(version.version) if promoted else int(champion.version),
        "promoted": promoted,
        "model_uri": f"models:/{name}@{alias}",
    }
    write_json_atomic(Path(params.paths.reports_dir) / REGISTRY_FILE, record)
    return record


def _val_accuracy(metrics_path: Path) -> float:
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    if "val" not in metrics:
        raise ValueError(f"{metrics_path} has no val metrics; keep 'val' in evaluate.splits to pick a champion")
    return float(metrics["val"]["accuracy"])


def _current_champion(client: MlflowClient, name: str, alias: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _version_accuracy(client: MlflowClient, version: Any) -> float | None:
    tagged = version.tags.get(SELECTION_METRIC)
    if tagged is not None:
        return float(tagged)
    # A version registered by hand carries no tag: read its run's metric.
    metric = client.get_run(version.run_id).data.metrics.get(SELECTION_METRIC) if version.run_id else None
    return None if metric is None else float(metric)
