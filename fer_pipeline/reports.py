"""File names of the reports the stages write under `paths.reports_dir`."""

VALIDATION_FILE = "validation.json"
VALIDATION_PAGE = "validation.html"
DATA_DOCS_DIR = "data_docs"
PREPARE_FILE = "prepare.json"
LEARNING_CURVE_CSV = "learning_curve.csv"
LEARNING_CURVE_PNG = "learning_curve.png"
METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion_matrices.json"
PREDICTIONS_FILE = "test_predictions.csv"
REGISTRY_FILE = "registry.json"
PER_CLASS_PNG = "per_class_scores.png"
ROBUSTNESS_CSV = "robustness.csv"
ROBUSTNESS_PNG = "robustness.png"
ROBUSTNESS_EXAMPLES_PNG = "robustness_examples.png"
REPORT_HTML = "report.html"
# `fer evaluate --csv` writes one JSON file per evaluation name here.
EVALUATIONS_DIR = "evaluations"


def confusion_png(split: str) -> str:
    """Name of the confusion-matrix plot of one split."""
    return f"confusion_matrix_{split}.png"
