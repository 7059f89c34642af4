"""Data-quality findings on FER-2013 images: blank images, duplicates, leakage, conflicting labels.

These are warnings, not validation failures: published FER-2013 results include these rows, so
the pipeline reports them and trains on the data as it is. Input: images of shape (n, 2304) or
(n, 48, 48, 1) as uint8, with labels and splits per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fer_pipeline.labels import EMOTIONS, NUM_CLASSES, SPLITS
from fer_pipeline.raw_data import line_numbers

# An image whose pixel standard deviation is below this is blank (one flat grey level).
BLANK_STD_THRESHOLD = 1.0


def find_quality_issues(images: np.ndarray, labels: np.ndarray, splits: np.ndarray, max_rows: int = 5) -> dict[str, Any]:
    """Count blank images, duplicate groups, cross-split leakage, conflicting labels and class gaps.

    Row numbers in the result are line numbers of the CSV the rows came from.
    """
    flat = np.ascontiguousarray(images.reshape(len(images), -1))

    return {
        "blank_images": _blank_images(flat, splits, max_rows),
        "duplicates": _duplicates(flat, labels, splits, max_rows),
        "class_distribution": _class_distribution(labels, splits),
    }


def _blank_images(flat: np.ndarray, splits: np.ndarray, max_rows: int) -> dict[str, Any]:
    blank = np.flatnonzero(flat.std(axis=1) < BLANK_STD_THRESHOLD)
    return {
        "count": int(blank.size),
        "per_split": {split: int((splits[blank] == split).sum()) for split in SPLITS},
        "first_lines": line_numbers(blank[:max_rows]),
    }


def _duplicates(flat: np.ndarray, labels: np.ndarray, splits: np.ndarray, max_rows: int) -> dict[str, Any]:
    # Viewing each row as one opaque 2,304-byte value lets np.unique group
    # identical images by sorting: O(n log n), never pairwise.
    rows_as_bytes = flat.view(np.dtype((np.void, flat.shape[1]))).ravel()
    _, group_of_row, group_sizes = np.unique(rows_as_bytes, return_inverse=True, return_counts=True)
    group_of_row = group_of_row.ravel()

    duplicated = group_sizes[group_of_row] > 1
    rows = np.flatnonzero(duplicated)
    groups = group_of_row[rows]

    split_codes = np.unique(splits[rows], return_inverse=True)[1].ravel()
    cross_split = _groups_with_several_values(groups, split_codes)
    conflicting = _groups_with_several_values(groups, labels[rows])

    conflicting_rows = rows[np.isin(groups, conflicting)]
    cross_split_rows = rows[np.isin(groups, cross_split)]
    return {
        "groups": int(np.unique(groups).size),
        "rows": int(rows.size),
        "cross_split_groups": int(cross_split.size),
        "conflicting_label_groups": int(conflicting.size),
        "first_lines": line_numbers(rows[:max_rows]),
        "first_cross_split_lines": line_numbers(cross_split_rows[:max_rows]),
        "first_conflicting_lines": line_numbers(conflicting_rows[:max_rows]),
    }


def _groups_with_several_values(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return the group ids whose rows carry more than one distinct value."""
    if groups.size == 0:
        return groups
    pairs = np.unique(np.stack([groups, values.astype(np.int64)], axis=1), axis=0)
    group_ids, counts = np.unique(pairs[:, 0], return_counts=True)
    return group_ids[counts > 1]


def _class_distribution(labels: np.ndarray, splits: np.ndarray) -> dict[str, Any]:
    distribution = {}
    missing = {}
    for split in SPLITS:
        counts = np.bincount(labels[splits == split].astype(np.int64), minlength=NUM_CLASSES)
        distribution[split] = {emotion: int(count) for emotion, count in zip(EMOTIONS, counts)}
        missing[split] = [emotion for emotion, count in zip(EMOTIONS, counts) if count == 0]
    return {"per_split": distribution, "missing_classes": {split: names for split, names in missing.items() if names}}
