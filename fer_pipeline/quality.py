"""Data-quality findings on FER-2013 images: blank images, duplicates, leakage, conflicting labels.

These are warnings, not validation failures: published FER-2013 results include these rows, so
the pipeline reports them and, by default, trains on the data as it is. `prepare` can drop them
(the `prepare.drop_*` params) using the same per-row masks. Input: images of shape (n, 2304) or
(n, 48, 48, 1) as uint8, with labels and splits per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fer_pipeline.labels import EMOTIONS, NUM_CLASSES, SPLITS
from fer_pipeline.raw_data import line_numbers

# An image whose pixel standard deviation is below this is blank (one flat grey level).
BLANK_STD_THRESHOLD = 1.0

# Duplicate groups shown as examples per finding (in validation.json and validation.html).
EXAMPLE_GROUPS = 3


@dataclass(frozen=True)
class QualityMasks:
    """Per-row flags; `group` is the duplicate group id of a row, -1 for a unique image."""

    blank: np.ndarray
    group: np.ndarray
    within_split: np.ndarray
    cross_split: np.ndarray
    conflicting: np.ndarray


def quality_masks(images: np.ndarray, labels: np.ndarray, splits: np.ndarray) -> QualityMasks:
    """Flag blank rows and the rows of duplicate groups: within a split, across splits, conflicting labels."""
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    group = _duplicate_groups(flat)

    duplicated = np.flatnonzero(group >= 0)
    groups = group[duplicated]
    split_codes = np.unique(splits[duplicated], return_inverse=True)[1].ravel()

    # A (group, split) pair on two or more rows is a duplicate within that split.
    pair_keys = groups * len(SPLITS) + split_codes
    repeated_keys, key_counts = np.unique(pair_keys, return_counts=True)
    within_split = np.zeros(len(flat), dtype=bool)
    within_split[duplicated[np.isin(pair_keys, repeated_keys[key_counts > 1])]] = True

    return QualityMasks(
        blank=_pixel_std(flat) < BLANK_STD_THRESHOLD,
        group=group,
        within_split=within_split,
        cross_split=_rows_in_groups(group, _groups_with_several_values(groups, split_codes)),
        conflicting=_rows_in_groups(group, _groups_with_several_values(groups, labels[duplicated])),
    )


def find_quality_issues(images: np.ndarray, labels: np.ndarray, splits: np.ndarray, max_rows: int = 5) -> dict[str, Any]:
    """Count blank images, duplicate groups, cross-split leakage, conflicting labels and the class distribution.

    Row numbers in the result are line numbers of the CSV the rows came from.
    """
    masks = quality_masks(images, labels, splits)
    blank = np.flatnonzero(masks.blank)
    duplicated = masks.group >= 0

    return {
        "blank_images": {
            "count": int(blank.size),
            "per_split": {split: int((splits[blank] == split).sum()) for split in SPLITS},
            "first_lines": line_numbers(blank[:max_rows]),
        },
        "duplicates": {
            "groups": _group_count(masks.group, duplicated),
            "rows": int(duplicated.sum()),
            "within_split_groups": _group_count(masks.group, masks.within_split),
            "cross_split_groups": _group_count(masks.group, masks.cross_split),
            "conflicting_label_groups": _group_count(masks.group, masks.conflicting),
            "first_lines": line_numbers(np.flatnonzero(duplicated)[:max_rows]),
            "first_cross_split_lines": line_numbers(np.flatnonzero(masks.cross_split)[:max_rows]),
            "first_conflicting_lines": line_numbers(np.flatnonzero(masks.conflicting)[:max_rows]),
            "example_groups": {
                "within_split": _example_groups(masks.group, masks.within_split & ~masks.cross_split),
                "cross_split": _example_groups(masks.group, masks.cross_split),
                "conflicting_labels": _example_groups(masks.group, masks.conflicting),
            },
        },
        "class_distribution": _class_distribution(labels, splits),
    }


def _pixel_std(flat: np.ndarray) -> np.ndarray:
    # float32 halves the memory of the default float64; a threshold of 1 grey
    # level needs no more precision.
    return flat.std(axis=1, dtype=np.float32)


def _duplicate_groups(flat: np.ndarray) -> np.ndarray:
    # Viewing each row as one opaque 2,304-byte value lets np.unique group
    # identical images by sorting: O(n log n), never pairwise.
    rows_as_bytes = flat.view(np.dtype((np.void, flat.shape[1]))).ravel()
    _, group_of_row, group_sizes = np.unique(rows_as_bytes, return_inverse=True, return_counts=True)
    group_of_row = group_of_row.ravel()
    return np.where(group_sizes[group_of_row] > 1, group_of_row, -1)


def _groups_with_several_values(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return the group ids whose rows carry more than one distinct value."""
    if groups.size == 0:
        return groups
    pairs = np.unique(np.stack([groups, values.astype(np.int64)], axis=1), axis=0)
    group_ids, counts = np.unique(pairs[:, 0], return_counts=True)
    return group_ids[counts > 1]


def _rows_in_groups(group: np.ndarray, selected_groups: np.ndarray) -> np.ndarray:
    return (group >= 0) & np.isin(group, selected_groups)


def _group_count(group: np.ndarray, mask: np.ndarray) -> int:
    return int(np.unique(group[mask]).size)


def _example_groups(group: np.ndarray, mask: np.ndarray) -> list[list[int]]:
    """Return the line numbers of the rows of the first few groups flagged by `mask`."""
    examples = []
    for group_id in np.unique(group[mask])[:EXAMPLE_GROUPS]:
        examples.append(line_numbers(np.flatnonzero(group == group_id)))
    return examples


def _class_distribution(labels: np.ndarray, splits: np.ndarray) -> dict[str, Any]:
    distribution = {}
    for split in SPLITS:
        counts = np.bincount(labels[splits == split].astype(np.int64), minlength=NUM_CLASSES)
        distribution[split] = {emotion: int(count) for emotion, count in zip(EMOTIONS, counts)}
    return {"per_split": distribution}
