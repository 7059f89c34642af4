"""Stage `train`: fit the CNN and log it to a new MLflow run.

In: `data/prepared/` (train and val splits). Out: `models/model.keras`,
`models/run.json` (the MLflow run and logged model for the next stages) and
`reports/learning_curve.csv` / `.png`. Run it with `fer train`.

The `model`, `train` and `augment` params (set by the preset) choose the
network, class weights, early stopping, learning-rate reduction and whether
train batches are augmented; val is never augmented.
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
import numpy as np
import tensorflow as tf

from fer_pipeline import tracking
from fer_pipeline.augment import AugmentedBatches
from fer_pipeline.files import atomic_path, remove_on_failure
from fer_pipeline.labels import EMOTIONS, NUM_CLASSES
from fer_pipeline.model import build_model, compile_model
from fer_pipeline.params import Params
from fer_pipeline.plots import plot_learning_curves
from fer_pipeline.prepare import load_split, load_summary
from fer_pipeline.reports import DATA_DOCS_DIR, LEARNING_CURVE_CSV, LEARNING_CURVE_PNG, PREPARE_FILE, VALIDATION_FILE, VALIDATION_PAGE

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
HISTORY_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# Early stopping and learning-rate reduction watch the metric that `register`
# uses to pick the champion.
SELECTION_MONITOR = "val_accuracy"
REDUCE_LR_FACTOR = 0.5
MIN_LEARNING_RATE = 1e-5


class EpochMetricsLogger(keras.callbacks.Callback):
    """Log loss, accuracy (train and val) and the learning rate to the active MLflow run, step = epoch number."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        metrics = {name: float(logs[name]) for name in HISTORY_METRICS if name in logs}
        metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
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

        history = fit_model(model, params, (train_images, train_labels), (val_images, val_labels))

        model_dir.mkdir(parents=True, exist_ok=True)
        model.save(model_dir / MODEL_FILE)
        model_uri = _log_model(model, train_images[:2])
        _write_learning_curves(history, reports_dir)
        mlflow.log_artifact(str(reports_dir / LEARNING_CURVE_PNG), artifact_path="plots")
        mlflow.log_artifact(str(reports_dir / LEARNING_CURVE_CSV), artifact_path="plots")

        tracking.write_run_file(model_dir, run, model_uri)
        log.info("MLflow run %s logged model %s", run.info.run_id, model_uri)

    return {"run_id": run.info.run_id, "model_uri": model_uri, "history": history}


def fit_model(
    model: keras.Model, params: Params, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]
) -> dict[str, list[float]]:
    """Fit on train (augmented when `augment.enabled`), validate on val as it is; return the history.

    Logs the best and the last epoch to the active MLflow run. With early
    stopping the model keeps the weights of its best val-accuracy epoch.
    """
    train_images, train_labels = train
    weights = class_weights(train_labels.argmax(axis=1), params.train.class_weight)
    if weights:
        log.info("class weights (%s): %s", params.train.class_weight, {EMOTIONS[label]: round(weight, 3) for label, weight in weights.items()})

    if params.augment.enabled:
        # Augmentation happens here, on the train split after the split was
        # made; the batches shuffle themselves, reproducibly from the seed.
        batches = AugmentedBatches(train_images, train_labels, params.train.batch_size, params.augment, params.train.seed)
        inputs = {"x": batches, "shuffle": False}
    else:
        inputs = {"x": train_images, "y": train_labels, "batch_size": params.train.batch_size}

    history = model.fit(
        **inputs,
        validation_data=val,
        epochs=params.train.epochs,
        class_weight=weights,
        callbacks=training_callbacks(params),
        verbose=1 if sys.stdout.isatty() else 2,
    ).history

    best_epoch = int(np.argmax(history[SELECTION_MONITOR])) + 1
    mlflow.log_metrics({"best_epoch": best_epoch, "epochs_trained": len(history["loss"])})
    log.info("trained %d epochs; best %s %.4f after epoch %d", len(history["loss"]), SELECTION_MONITOR, max(history[SELECTION_MONITOR]), best_epoch)
    return history


def training_callbacks(params: Params) -> list[keras.callbacks.Callback]:
    """MLflow logging, plus early stopping and learning-rate reduction when their patience is above 0."""
    callbacks: list[keras.callbacks.Callback] = [EpochMetricsLogger()]
    if params.train.reduce_lr_patience:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=SELECTION_MONITOR, mode="max", factor=REDUCE_LR_FACTOR,
                patience=params.train.reduce_lr_patience, min_lr=MIN_LEARNING_RATE, verbose=1,
            )
        )
    if params.train.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=SELECTION_MONITOR, mode="max", patience=params.train.early_stopping_patience,
                restore_best_weights=True, verbose=1,
            )
        )
    return callbacks


def class_weights(labels: np.ndarray, method: str) -> dict[int, float] | None:
    """Weight per class index from integer train labels: `balanced`, `balanced_sqrt`, or None for `none`.

    A class absent from train gets weight 1, since no sample of it is weighted anyway.
    """
    if method == "none":
        return None
    if method not in ("balanced", "balanced_sqrt"):
        raise ValueError(f"unknown class weight method {method!r}; use none, balanced or balanced_sqrt")

    counts = np.bincount(labels.astype(np.int64), minlength=NUM_CLASSES)
    balanced = np.divide(labels.size, NUM_CLASSES * counts, out=np.ones(NUM_CLASSES), where=counts > 0)
    weights = np.sqrt(balanced) if method == "balanced_sqrt" else balanced
    return {label: float(weight) for label, weight in enumerate(weights)}


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
    mlflow.log_metrics({f"prepare/dropped_{policy}": count for policy, count in summary.get("dropped", {}).items()})
    reports_dir = Path(params.paths.reports_dir)
    for report in (VALIDATION_FILE, VALIDATION_PAGE, PREPARE_FILE):
        if (reports_dir / report).is_file():
            mlflow.log_artifact(str(reports_dir / report), artifact_path="data")
    if (reports_dir / DATA_DOCS_DIR).is_dir():
        mlflow.log_artifacts(str(reports_dir / DATA_DOCS_DIR), artifact_path="data/data_docs")


def _log_model(model: keras.Model, example_images: Any) -> str:
    # The logged (and later registered) model is the serving pyfunc, which
    # owns its preprocessing and keeps a keras flavor for the bare network.
    from fer_pipeline import serving

    return serving.log_model(model, example_images)


def _write_learning_curves(history: dict[str, list[float]], reports_dir: Path) -> None:
    with atomic_path(reports_dir / LEARNING_CURVE_CSV) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["epoch", *HISTORY_METRICS])
            for epoch in range(len(history["loss"])):
                writer.writerow([epoch + 1, *(round(history[name][epoch], 6) for name in HISTORY_METRICS)])
    plot_learning_curves(history, reports_dir / LEARNING_CURVE_PNG)
