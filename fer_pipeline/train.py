"""Stage `train`: fit the reference CNN and log it to a new MLflow run.

In: `data/prepared/` (train and val splits). Out: `models/model.keras`,
`models/run.json` (the MLflow run and logged model for the next stages) and
`reports/learning_curve.csv` / `.png`. Run it with `fer train`.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import keras
import mlflow
import tensorflow as tf

from fer_pipeline import tracking
from fer_pipeline.files import atomic_path, remove_on_failure
from fer_pipeline.model import build_model, compile_model
from fer_pipeline.params import Params
from fer_pipeline.plots import plot_learning_curves
from fer_pipeline.prepare import load_split, load_summary
from fer_pipeline.reports import LEARNING_CURVE_CSV, LEARNING_CURVE_PNG, VALIDATION_FILE

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
HISTORY_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


class EpochMetricsLogger(keras.callbacks.Callback):
    """Log loss and accuracy (train and val) to the active MLflow run, step = epoch number."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        metrics = {name: float(logs[name]) for name in HISTORY_METRICS if name in logs}
        mlflow.log_metrics(metrics, step=epoch + 1)


def run_train(params: Params, root: str | Path = ".") -> dict[str, Any]:
    """Train the model on train, validate on val each epoch, log everything to MLflow."""
    experiment_id = tracking.configure(params.mlflow.experiment, root)
    prepared_dir = Path(params.paths.prepared_dir)
    summary = load_summary(prepared_dir)

    train_images, train_labels = load_split(prepared_dir, "train")
    val_images, val_labels = load_split(prepared_dir, "val")
    log.info("train images %s, val images %s", train_images.shape, val_images.shape)

    keras.utils.set_random_seed(params.train.seed)
    model = compile_model(build_model(params.model), params.train)
    device = describe_device()
    log.info("training on %s", device)

    model_dir = Path(params.paths.model_dir)
    reports_dir = Path(params.paths.reports_dir)
    outputs = [model_dir / MODEL_FILE, model_dir / tracking.RUN_FILE, reports_dir / LEARNING_CURVE_CSV, reports_dir / LEARNING_CURVE_PNG]
    with remove_on_failure(outputs), _start_run(experiment_id) as run:
        _log_run_inputs(params, summary, device, root)

        history = model.fit(
            train_images,
            train_labels,
            validation_data=(val_images, val_labels),
            epochs=params.train.epochs,
            batch_size=params.train.batch_size,
            callbacks=[EpochMetricsLogger()],
            verbose=1 if sys.stdout.isatty() else 2,
        ).history

        model_dir.mkdir(parents=True, exist_ok=True)
        model.save(model_dir / MODEL_FILE)
        model_uri = _log_model(model, train_images[:2])
        _write_learning_curves(history, reports_dir)
        mlflow.log_artifact(str(reports_dir / LEARNING_CURVE_PNG), artifact_path="plots")
        mlflow.log_artifact(str(reports_dir / LEARNING_CURVE_CSV), artifact_path="plots")

        tracking.write_run_file(model_dir, run, model_uri)
        log.info("MLflow run %s logged model %s", run.info.run_id, model_uri)

    return {"run_id": run.info.run_id, "model_uri": model_uri, "history": history}


def describe_device() -> str:
    """Describe the device TensorFlow trains on: its first visible GPU, else the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"GPU ({len(gpus)} visible: {', '.join(gpu.name for gpu in gpus)})"
    return "CPU (TensorFlow sees no GPU)"


def _start_run(experiment_id: str) -> Any:
    # `mlflow run` creates the run itself, in its own experiment, and passes
    # it in MLFLOW_RUN_ID: continue that run instead of starting another.
    if os.environ.get("MLFLOW_RUN_ID"):
        return mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"])
    return mlflow.start_run(experiment_id=experiment_id)


def _log_run_inputs(params: Params, summary: dict[str, Any], device: str, root: str | Path) -> None:
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    mlflow.log_params(params.flat())

    tags = {
        "dvc.raw_csv_md5": summary["raw_csv_md5"],
        "device": device,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "stage": "train",
    }
    commit = tracking.git_commit(root)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    mlflow.set_tags(tags)

    # The digest is DVC's MD5 of the raw CSV, so a run links to one DVC version.
    raw_csv = Path(summary["raw_csv"]).resolve()
    with warnings.catch_warnings():
        # MLflow registers the local-file source class twice and warns about it.
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(raw_csv.as_uri())
    dataset = MetaDataset(source=source, name=raw_csv.name, digest=summary["raw_csv_md5"][:20])
    mlflow.log_input(dataset, context="training", tags={"rows": str(sum(split["rows"] for split in summary["splits"].values()))})
    mlflow.log_dict(summary, "data/prepare_summary.json")
    validation_report = Path(params.paths.reports_dir) / VALIDATION_FILE
    if validation_report.is_file():
        mlflow.log_artifact(str(validation_report), artifact_path="data")


def _log_model(model: keras.Model, example_images: Any) -> str:
    from mlflow.models import infer_signature

    # NOTE: mlflow.keras.log_model fails when given input_example (MLflow 3.x),
    # so only the signature is logged. Explicit pip requirements skip MLflow's
    # slow dependency inference.
    signature = infer_signature(example_images, model.predict(example_images, verbose=0))
    info = mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"mlflow=={mlflow.__version__}"],
    )
    return info.model_uri


def _write_learning_curves(history: dict[str, list[float]], reports_dir: Path) -> None:
    with atomic_path(reports_dir / LEARNING_CURVE_CSV) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["epoch", *HISTORY_METRICS])
            for epoch in range(len(history["loss"])):
                writer.writerow([epoch + 1, *(round(history[name][epoch], 6) for name in HISTORY_METRICS)])
    plot_learning_curves(history, reports_dir / LEARNING_CURVE_PNG)
