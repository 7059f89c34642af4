"""Cross-dataset evaluation: score the current or a registered model on any FER-format CSV.

`fer evaluate --csv PATH --name NAME [--model REF]` validates the CSV with the
same suite as the `validate` stage, parses it with `raw_data`, scores every
row with `metrics.split_metrics`, and logs the results to the MLflow run that
trained the model, under `NAME/` (`NAME/accuracy`, `NAME/macro_f1`,
`NAME/per_class/disgust/recall`, ...). It also writes a JSON report, by
default `reports/evaluations/NAME.json`, and logs it to that run.

REF is empty for the model of the last `train` (`models/model.keras`), a
version number of `mlflow.registered_model`, or a `models:/` URI such as
`models:/fer-emotion-cnn@champion` or `models:/fer-emotion-cnn/3`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fer_pipeline import raw_data, tracking
from fer_pipeline.files import write_json_atomic
from fer_pipeline.labels import EMOTIONS, SPLITS
from fer_pipeline.metrics import split_metrics
from fer_pipeline.model import predict_probabilities
from fer_pipeline.params import Params
from fer_pipeline.prepare import class_counts, file_md5
from fer_pipeline.reports import EVALUATIONS_DIR
from fer_pipeline.train import MODEL_FILE
from fer_pipeline.validate import validate_csv

log = logging.getLogger(__name__)

# The name prefixes MLflow metric keys and names the JSON file.
EVALUATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MODELS_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))")


@dataclass(frozen=True)
class ModelReference:
    """A model to evaluate: where to load it from and which MLflow run gets the results."""

    description: str
    run_id: str
    local_path: Path | None = None
    model_uri: str | None = None


def evaluate_csv(
    params: Params,
    csv_path: str | Path,
    name: str,
    model: str | None = None,
    output: str | Path | None = None,
    root: str | Path = ".",
) -> dict[str, Any]:
    """Score a model on every row of a FER-format CSV, log it under `name` to the model's run, and write JSON."""
    check_evaluation_name(name)
    csv_path = Path(csv_path)
    output = Path(output) if output else Path(params.paths.reports_dir) / EVALUATIONS_DIR / f"{name}.json"
    tracking.configure(params.mlflow.experiment, root)
    reference = resolve_model(params, model)

    images, labels = read_labeled_images(csv_path, params.validate.max_rows_reported)
    probabilities = _predict(reference, images, params)
    result = split_metrics_without_matrices(labels, probabilities)

    report = {
        "name": name,
        "csv": str(csv_path),
        "csv_md5": file_md5(csv_path),
        "model": reference.description,
        "run_id": reference.run_id,
        "tta_flip": params.evaluate.tta_flip,
        "per_class_rows": class_counts(labels),
        "metrics": result["summary"],
        "confusion_matrix": {"labels": list(EMOTIONS), "counts": result["confusion_matrix"]},
    }
    write_json_atomic(output, report)
    _log_to_run(reference.run_id, name, report, output)
    log.info("%s on %s (%d rows): accuracy %.4f, macro-F1 %.4f", reference.description, csv_path, labels.size, result["summary"]["accuracy"], result["summary"]["macro_f1"])
    return report


def check_evaluation_name(name: str) -> None:
    """Reject a name that is not a safe metric prefix and file name, or that would mix with the split metrics."""
    if not EVALUATION_NAME.fullmatch(name or ""):
        raise ValueError(f"invalid evaluation name {name!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit")
    if name in SPLITS:
        raise ValueError(f"invalid evaluation name {name!r}: it would overwrite the {name} split's metrics; choose another, e.g. {name}_external")


def resolve_model(params: Params, model: str | None) -> ModelReference:
    """Find the model to load and the MLflow run it was trained in."""
    if not model:
        record = tracking.read_run_file(params.paths.model_dir)
        return ModelReference(f"current model ({record['model_uri']})", record["run_id"], local_path=Path(params.paths.model_dir) / MODEL_FILE)

    if model.isdigit():
        model = f"models:/{params.mlflow.registered_model}/{model}"
    match = MODELS_URI.fullmatch(model)
    if not match:
        raise ValueError(
            f"invalid model {model!r}: expected a version number or a models:/ URI, "
            f"e.g. models:/{params.mlflow.registered_model}@{params.mlflow.champion_alias} or models:/{params.mlflow.registered_model}/1"
        )

    version = _registered_version(match["name"], match["alias"], match["version"])
    if not version.run_id:
        raise ValueError(f"{model} (version {version.version}) has no MLflow run to log to; it was registered without one")
    return ModelReference(f"{model} (version {version.version})", version.run_id, model_uri=f"models:/{match['name']}/{version.version}")


def read_labeled_images(csv_path: Path, max_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate and parse a FER-format CSV; return float images in [0, 1], (n, 48, 48, 1), and integer labels."""
    # The suite rejects bad emotions, pixels and columns with line numbers,
    # so the parsing below gets valid rows only.
    # NOTE: this reads the CSV twice (suite, then parsing); on a file the size
    # of FER-2013 that costs a few seconds.
    validate_csv(csv_path, max_rows=max_rows)
    frame = raw_data.read_raw_csv(csv_path)

    images = raw_data.parse_pixels(frame["pixels"]).astype(np.float32) / 255.0
    labels = frame["emotion"].astype(int).to_numpy()
    return images, labels


def split_metrics_without_matrices(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Run `metrics.split_metrics`; return its scalar and per-class scores and its confusion matrix apart."""
    result = split_metrics(labels, probabilities)
    summary = {key: value for key, value in result.items() if not key.startswith("confusion_matrix")}
    return {"summary": summary, "confusion_matrix": result["confusion_matrix"]}


def _registered_version(name: str, alias: str | None, version: str | None) -> Any:
    client = MlflowClient()
    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, version)
    except MlflowException as error:
        requested = f"alias {alias!r}" if alias else f"version {version}"
        raise ValueError(
            f"registered model {name!r} has no {requested} in {tracking.tracking_uri()}: {error.message}; "
            "list versions in the MLflow UI or run `fer register` first"
        ) from None


def _predict(reference: ModelReference, images: np.ndarray, params: Params) -> np.ndarray:
    if reference.local_path is not None:
        if not reference.local_path.is_file():
            raise FileNotFoundError(f"{reference.local_path} not found; run `fer train` first or pass --model")
        model = keras.models.load_model(reference.local_path, compile=False)
    else:
        # Inference needs no optimizer state, so the model loads uncompiled.
        model = mlflow.keras.load_model(reference.model_uri, load_model_kwargs={"compile": False})
    return predict_probabilities(model, images, params.evaluate.batch_size, params.evaluate.tta_flip)


def _log_to_run(run_id: str, name: str, report: dict[str, Any], output: Path) -> None:
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(tracking.flatten(name, report["metrics"]))
        mlflow.set_tags({f"evaluation.{name}.csv": report["csv"], f"evaluation.{name}.csv_md5": report["csv_md5"]})
        mlflow.log_artifact(str(output), artifact_path=EVALUATIONS_DIR)
    log.info("logged evaluation %r to MLflow run %s", name, run_id)
