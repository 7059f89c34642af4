"""Stage `evaluate`: score the trained model on each split and log the results.

In: `models/model.keras`, `models/run.json`, `data/prepared/`. Out:
`reports/metrics.json` (DVC metrics: loss, accuracy, macro-F1 and per-class
precision/recall/F1 per split), `reports/confusion_matrices.json`, one
confusion-matrix PNG per split and `reports/test_predictions.csv` (DVC's
confusion plot). The same numbers go to the training run in MLflow.
Run it with `fer evaluate`.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import keras
import mlflow

from fer_pipeline import tracking
from fer_pipeline.files import atomic_path, remove_on_failure, write_json_atomic
from fer_pipeline.labels import EMOTIONS
from fer_pipeline.metrics import split_metrics
from fer_pipeline.params import Params
from fer_pipeline.plots import plot_confusion_matrix
from fer_pipeline.prepare import load_split
from fer_pipeline.reports import CONFUSION_FILE, METRICS_FILE, PREDICTIONS_FILE, confusion_png
from fer_pipeline.train import MODEL_FILE

log = logging.getLogger(__name__)



def run_evaluate(params: Params, root: str | Path = ".") -> dict[str, Any]:
    """Evaluate on every split in `evaluate.splits`; write reports and log them to the run."""
    tracking.configure(params.mlflow.experiment, root)
    run_record = tracking.read_run_file(params.paths.model_dir)
    model = keras.models.load_model(Path(params.paths.model_dir) / MODEL_FILE)

    results = {}
    predictions = {}
    for split in params.evaluate.splits:
        images, one_hot_labels = load_split(params.paths.prepared_dir, split)
        labels = one_hot_labels.argmax(axis=1)
        probabilities = model.predict(images, batch_size=params.evaluate.batch_size, verbose=0)
        results[split] = split_metrics(labels, probabilities)
        predictions[split] = (labels, probabilities.argmax(axis=1))
        log.info("%s: accuracy %.4f, macro-F1 %.4f, loss %.4f", split, results[split]["accuracy"], results[split]["macro_f1"], results[split]["loss"])

    reports_dir = Path(params.paths.reports_dir)
    outputs = [reports_dir / name for name in (METRICS_FILE, CONFUSION_FILE, PREDICTIONS_FILE)]
    outputs += [reports_dir / confusion_png(split) for split in results]
    with remove_on_failure(outputs):
        _write_reports(results, predictions, reports_dir)
        _log_to_run(results, run_record, reports_dir)
    return results


def metrics_summary(results: dict[str, Any]) -> dict[str, Any]:
    """Keep the scalar metrics and per-class scores, without the confusion matrices."""
    summary = {}
    for split, result in results.items():
        summary[split] = {key: value for key, value in result.items() if not key.startswith("confusion_matrix")}
    return summary


def _write_reports(results: dict[str, Any], predictions: dict[str, Any], reports_dir: Path) -> None:
    write_json_atomic(reports_dir / METRICS_FILE, metrics_summary(results))
    write_json_atomic(
        reports_dir / CONFUSION_FILE,
        {
            split: {
                "labels": list(EMOTIONS),
                "counts": result["confusion_matrix"],
                "normalized": result["confusion_matrix_normalized"],
            }
            for split, result in results.items()
        },
    )
    for split, result in results.items():
        plot_confusion_matrix(result["confusion_matrix"], f"{split} split: confusion matrix", reports_dir / confusion_png(split))

    # DVC's confusion-matrix template plots one row per image.
    if "test" in predictions:
        labels, predicted = predictions["test"]
        with atomic_path(reports_dir / PREDICTIONS_FILE) as temporary:
            with open(temporary, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["actual", "predicted"])
                writer.writerows((EMOTIONS[a], EMOTIONS[p]) for a, p in zip(labels, predicted))


def _log_to_run(results: dict[str, Any], run_record: dict[str, str], reports_dir: Path) -> None:
    with mlflow.start_run(run_id=run_record["run_id"]):
        metrics = {}
        for split, result in metrics_summary(results).items():
            metrics.update(tracking.flatten(split, result))
        mlflow.log_metrics(metrics)

        mlflow.log_artifact(str(reports_dir / METRICS_FILE), artifact_path="evaluation")
        mlflow.log_artifact(str(reports_dir / CONFUSION_FILE), artifact_path="evaluation")
        for split in results:
            mlflow.log_artifact(str(reports_dir / confusion_png(split)), artifact_path="plots")
    log.info("logged %d metrics to MLflow run %s", len(metrics), run_record["run_id"])
