"""Stage `evaluate`: score the trained model on each split and under each robustness condition.

In: `models/model.keras`, `models/run.json`, `data/prepared/`, and for the
report `reports/learning_curve.png` and `reports/validation.json`. Out:
`reports/metrics.json` (DVC metrics: loss, accuracy, macro-F1 and per-class
precision/recall/F1 per split, plus `robust` scores on the robustness split),
`reports/confusion_matrices.json`, one confusion-matrix PNG per split,
`reports/test_predictions.csv` (DVC's confusion plot), `per_class_scores.png`,
`robustness.csv` / `.png`, `robustness_examples.png` and the self-contained
`report.html`. The same numbers and files go to the training run in MLflow.
Run it with `fer evaluate`.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np

from fer_pipeline import tracking
from fer_pipeline.files import atomic_path, remove_on_failure, write_json_atomic
from fer_pipeline.labels import EMOTIONS
from fer_pipeline.metrics import split_metrics
from fer_pipeline.model import predict_probabilities
from fer_pipeline.params import Params
from fer_pipeline.plots import plot_condition_examples, plot_confusion_matrix, plot_per_class_scores, plot_robustness
from fer_pipeline.prepare import load_split
from fer_pipeline.report import ReportInputs, write_report
from fer_pipeline.reports import (
    CONFUSION_FILE,
    METRICS_FILE,
    PER_CLASS_PNG,
    PREDICTIONS_FILE,
    REPORT_HTML,
    ROBUSTNESS_CSV,
    ROBUSTNESS_EXAMPLES_PNG,
    ROBUSTNESS_PNG,
    confusion_png,
)
from fer_pipeline.robustness import evaluate_robustness
from fer_pipeline.train import MODEL_FILE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitPredictions:
    """Integer labels, predicted probabilities (n, 7) and, for the robustness split only, the images of one split.

    Images are float in [0, 1], shape (n, 48, 48, 1). Other splits drop
    theirs, which keeps the 28,709 train images (260 MiB) out of memory.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    images: np.ndarray | None


def run_evaluate(params: Params, root: str | Path = ".") -> dict[str, Any]:
    """Evaluate every split in `evaluate.splits` and the robustness conditions; write reports and log them to the run."""
    tracking.configure(params.mlflow.experiment, root)
    run_record = tracking.read_run_file(params.paths.model_dir)
    _check_robustness_split(params)
    model = keras.models.load_model(Path(params.paths.model_dir) / MODEL_FILE)

    results, predictions = score_splits(model, params)

    robust_split = params.robustness.split
    scored = predictions[robust_split]
    results[robust_split]["robust"], examples = evaluate_robustness(
        model, scored.images, scored.labels, results[robust_split], params.robustness, params.evaluate
    )

    reports_dir = Path(params.paths.reports_dir)
    outputs = [reports_dir / name for name in (METRICS_FILE, CONFUSION_FILE, PREDICTIONS_FILE, PER_CLASS_PNG, REPORT_HTML)]
    outputs += [reports_dir / name for name in (ROBUSTNESS_CSV, ROBUSTNESS_PNG, ROBUSTNESS_EXAMPLES_PNG)]
    outputs += [reports_dir / confusion_png(split) for split in results]
    with remove_on_failure(outputs):
        _write_reports(results, predictions, reports_dir)
        _write_robustness_reports(results, examples, params.robustness.split, reports_dir)
        write_report(_report_inputs(params, run_record, results, predictions), reports_dir / REPORT_HTML)
        _log_to_run(results, run_record, reports_dir)
    return results


def score_splits(model: keras.Model, params: Params) -> tuple[dict[str, Any], dict[str, SplitPredictions]]:
    """Predict every split of `evaluate.splits` (with flip averaging when `evaluate.tta_flip`) and compute its metrics."""
    results = {}
    predictions = {}
    for split in params.evaluate.splits:
        images, one_hot_labels = load_split(params.paths.prepared_dir, split)
        labels = one_hot_labels.argmax(axis=1)
        probabilities = predict_probabilities(model, images, params.evaluate.batch_size, params.evaluate.tta_flip)

        results[split] = split_metrics(labels, probabilities)
        kept_images = images if split == params.robustness.split else None
        predictions[split] = SplitPredictions(labels, probabilities, kept_images)
        log.info("%s: accuracy %.4f, macro-F1 %.4f, loss %.4f", split, results[split]["accuracy"], results[split]["macro_f1"], results[split]["loss"])
    return results, predictions


def metrics_summary(results: dict[str, Any]) -> dict[str, Any]:
    """Keep the scalar metrics, per-class and robustness scores, without the confusion matrices."""
    summary = {}
    for split, result in results.items():
        summary[split] = {key: value for key, value in result.items() if not key.startswith("confusion_matrix")}
    return summary


def _check_robustness_split(params: Params) -> None:
    split = params.robustness.split
    if split not in params.evaluate.splits:
        raise ValueError(
            f"robustness.split {split!r} is not in evaluate.splits {list(params.evaluate.splits)}; "
            "add it there, since robustness drops are measured against that split's clean scores"
        )


def _write_reports(results: dict[str, Any], predictions: dict[str, SplitPredictions], reports_dir: Path) -> None:
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
    plot_per_class_scores(results, reports_dir / PER_CLASS_PNG)

    # DVC's confusion-matrix template plots one row per image.
    if "test" in predictions:
        labels = predictions["test"].labels
        predicted = predictions["test"].probabilities.argmax(axis=1)
        with atomic_path(reports_dir / PREDICTIONS_FILE) as temporary:
            with open(temporary, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["actual", "predicted"])
                writer.writerows((EMOTIONS[a], EMOTIONS[p]) for a, p in zip(labels, predicted))


def _write_robustness_reports(results: dict[str, Any], examples: dict[str, np.ndarray], split: str, reports_dir: Path) -> None:
    # Written even with no conditions (clean row only), since dvc.yaml declares these files.
    clean = results[split]
    conditions = clean["robust"]

    # One row per condition, clean first, for `dvc plots show` and `dvc plots diff`.
    with atomic_path(reports_dir / ROBUSTNESS_CSV) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["condition", "accuracy", "macro_f1"])
            writer.writerow(["clean", round(clean["accuracy"], 6), round(clean["macro_f1"], 6)])
            writer.writerows([name, round(scores["accuracy"], 6), round(scores["macro_f1"], 6)] for name, scores in conditions.items())

    plot_robustness(clean, conditions, f"{split} split under each robustness condition", reports_dir / ROBUSTNESS_PNG)
    plot_condition_examples(examples, reports_dir / ROBUSTNESS_EXAMPLES_PNG)


def _report_inputs(
    params: Params, run_record: dict[str, str], results: dict[str, Any], predictions: dict[str, SplitPredictions]
) -> ReportInputs:
    # The prediction grid shows the split that the robustness evaluation uses (test by default).
    faces_split = params.robustness.split
    shown = predictions[faces_split]
    notes = ["Predictions average each face and its mirror image (evaluate.tta_flip)."] if params.evaluate.tta_flip else []
    return ReportInputs(
        run_id=run_record["run_id"],
        model_uri=run_record["model_uri"],
        preset=params.preset,
        params=params.flat(),
        results=results,
        faces_split=faces_split,
        faces=shown.images,
        labels=shown.labels,
        probabilities=shown.probabilities,
        reports_dir=Path(params.paths.reports_dir),
        robustness_split=params.robustness.split,
        notes=notes,
    )


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
        for name in (PER_CLASS_PNG, ROBUSTNESS_PNG, ROBUSTNESS_EXAMPLES_PNG, ROBUSTNESS_CSV):
            mlflow.log_artifact(str(reports_dir / name), artifact_path="plots")
        mlflow.log_artifact(str(reports_dir / REPORT_HTML), artifact_path="report")
    log.info("logged %d metrics to MLflow run %s", len(metrics), run_record["run_id"])
