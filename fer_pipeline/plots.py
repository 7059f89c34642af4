"""PNG plots of learning curves, confusion matrices, per-class scores and robustness (matplotlib, no display needed)."""

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


def plot_per_class_scores(results: dict[str, dict], path: str | Path) -> None:
    """Plot precision and recall per class as paired bars, one panel per split."""
    splits = list(results)
    figure, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 4), squeeze=False, sharey=True)
    positions = np.arange(len(EMOTIONS))

    for axis, split in zip(axes[0], splits):
        per_class = results[split]["per_class"]
        for offset, metric in ((-0.2, "precision"), (0.2, "recall")):
            axis.bar(positions + offset, [per_class[emotion][metric] for emotion in EMOTIONS], width=0.4, label=metric)
        axis.set_xticks(positions, EMOTIONS, rotation=45, ha="right")
        axis.set_ylim(0, 1)
        axis.set_title(f"{split} split")
        axis.grid(axis="y", alpha=0.3)
        axis.legend()

    _save(figure, path)


def plot_robustness(clean: dict, conditions: dict[str, dict], title: str, path: str | Path) -> None:
    """Plot accuracy and macro-F1 per condition as horizontal bars against the clean split's values."""
    names = list(conditions)
    figure, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.8), sharey=True)
    positions = np.arange(len(names))

    for axis, metric in zip(axes, ("accuracy", "macro_f1")):
        values = [conditions[name][metric] for name in names]
        axis.barh(positions, values, color="tab:orange")
        axis.axvline(clean[metric], color="tab:blue", linestyle="--", label=f"clean {clean[metric]:.3f}")
        for position, name in zip(positions, names):
            axis.text(conditions[name][metric] + 0.005, position, f"{-conditions[name][f'{metric}_drop']:+.3f}", va="center", fontsize=8)
        axis.set_yticks(positions, names)
        axis.set_xlim(0, 1)
        axis.set_xlabel(f"{metric} (labels: change from clean)")
        axis.grid(axis="x", alpha=0.3)
        axis.legend(loc="lower right")

    # The axes share y, so one inversion puts the first condition at the top of both.
    axes[0].invert_yaxis()
    figure.suptitle(title)
    _save(figure, path)


def plot_condition_examples(examples: dict[str, np.ndarray], path: str | Path) -> None:
    """Show the same faces under each condition: one row per condition, images of shape (k, 48, 48, 1) in [0, 1]."""
    names = list(examples)
    columns = max(len(images) for images in examples.values())
    figure, axes = plt.subplots(len(names), columns, figsize=(1.1 * columns + 1.4, 1.1 * len(names)), squeeze=False)

    for row, name in enumerate(names):
        for column, axis in enumerate(axes[row]):
            axis.set_xticks([])
            axis.set_yticks([])
            if column < len(examples[name]):
                # Nearest-neighbour scaling shows the real pixels, and the PNG compresses far better.
                axis.imshow(examples[name][column, ..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)

    _save(figure, path)


def _save(figure: plt.Figure, path: str | Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
