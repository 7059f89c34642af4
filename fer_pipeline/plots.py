"""PNG plots of learning curves and confusion matrices (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fer_pipeline.files import atomic_path  # noqa: E402
from fer_pipeline.labels import EMOTIONS  # noqa: E402


def plot_learning_curves(history: dict[str, list[float]], path: str | Path) -> None:
    """Plot loss and accuracy per epoch for train and val side by side."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))

    for axis, metric in zip(axes, ("loss", "accuracy")):
        axis.plot(epochs, history[metric], marker="o", label="train")
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], marker="o", label="val")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()

    _save(figure, path)


def plot_confusion_matrix(matrix: np.ndarray, title: str, path: str | Path) -> None:
    """Plot counts and the row-normalized matrix (recall per true class) side by side."""
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    normalized = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    figure, axes = plt.subplots(1, 2, figsize=(14, 6))

    for axis, values, label, text_format in (
        (axes[0], matrix, "count", "{:d}"),
        (axes[1], normalized, "share of true class", "{:.2f}"),
    ):
        image = axis.imshow(values, cmap="Blues")
        figure.colorbar(image, ax=axis, fraction=0.046, label=label)
        axis.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
        axis.set_yticks(range(len(EMOTIONS)), EMOTIONS)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        threshold = values.max() / 2 if values.size else 0
        for row in range(values.shape[0]):
            for column in range(values.shape[1]):
                value = values[row, column]
                axis.text(
                    column, row, text_format.format(value.item()),
                    ha="center", va="center", fontsize=8,
                    color="white" if value > threshold else "black",
                )

    figure.suptitle(title)
    _save(figure, path)


def _save(figure: plt.Figure, path: str | Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
