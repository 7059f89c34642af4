"""Classification metrics from labels and predicted probabilities (pure NumPy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fer_pipeline.labels import EMOTIONS, NUM_CLASSES

# Keras clips probabilities the same way before taking the log.
EPSILON = 1e-7


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Count (true class, predicted class) pairs; rows are true classes, shape (7, 7)."""
    pairs = labels.astype(np.int64) * NUM_CLASSES + predictions.astype(np.int64)
    return np.bincount(pairs, minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Divide each row by its sum, so each row shows how one true class is spread over the predictions."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=np.float64), where=totals > 0)


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean categorical cross-entropy of integer labels under predicted probabilities."""
    chosen = probabilities[np.arange(labels.size), labels]
    return float(-np.mean(np.log(np.clip(chosen, EPSILON, 1.0))))


def split_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Compute loss, accuracy, per-class precision/recall/F1 and macro-F1 for one split.

    A class that is never predicted (or never present) gets precision (or
    recall) 0, the convention scikit-learn uses with `zero_division=0`.
    """
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions)

    true_positives = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = np.divide(true_positives, predicted, out=np.zeros(NUM_CLASSES), where=predicted > 0)
    recall = np.divide(true_positives, actual, out=np.zeros(NUM_CLASSES), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(NUM_CLASSES), where=denominator > 0)

    return {
        "rows": int(labels.size),
        "loss": cross_entropy(labels, probabilities),
        "accuracy": float(true_positives.sum() / max(labels.size, 1)),
        "macro_f1": float(f1.mean()),
        "per_class": {
            emotion: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for emotion, p, r, f, s in zip(EMOTIONS, precision, recall, f1, actual)
        },
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_normalized": normalize_rows(matrix).round(4).tolist(),
    }
