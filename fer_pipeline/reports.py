"""File names of the reports the stages write under `paths.reports_dir`."""

VALIDATION_FILE = "validation.json"
LEARNING_CURVE_CSV = "learning_curve.csv"
LEARNING_CURVE_PNG = "learning_curve.png"
METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion_matrices.json"
PREDICTIONS_FILE = "test_predictions.csv"
REGISTRY_FILE = "registry.json"


def confusion_png(split: str) -> str:
    """Name of the confusion-matrix plot of one split."""
    return f"confusion_matrix_{split}.png"
