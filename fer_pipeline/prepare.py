"""Stage `prepare`: parse pixels and write one array file per split.

In: the raw CSV (`paths.raw_csv`), already validated. Out: `data/prepared/`
with `train.npz`, `val.npz`, `test.npz` (uint8 images of shape (n, 48, 48, 1)
and integer labels) and `summary.json` (counts and the CSV's MD5, which is the
hash DVC records for it), and `reports/prepare.json` (DVC metrics: rows per
split and the rows each `prepare.drop_*` policy dropped). Run it with `fer prepare`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from fer_pipeline import raw_data
from fer_pipeline.files import atomic_directory, remove_on_failure, write_json_atomic
from fer_pipeline.labels import EMOTIONS, NUM_CLASSES, SPLITS, USAGE_TO_SPLIT
from fer_pipeline.params import Params, PrepareParams
from fer_pipeline.quality import quality_masks
from fer_pipeline.reports import PREPARE_FILE

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


def run_prepare(params: Params) -> dict[str, Any]:
    """Split the raw CSV into train/val/test arrays under `paths.prepared_dir`."""
    csv_path = Path(params.paths.raw_csv)
    frame = raw_data.read_raw_csv(csv_path)

    images = raw_data.parse_pixels(frame["pixels"])
    labels = frame["emotion"].astype(int).to_numpy(dtype=np.uint8)
    splits = frame["Usage"].map(USAGE_TO_SPLIT).to_numpy()

    keep, dropped = rows_to_keep(images, labels, splits, params.prepare)
    images, labels, splits = images[keep], labels[keep], splits[keep]

    summary: dict[str, Any] = {"raw_csv": str(csv_path), "raw_csv_md5": file_md5(csv_path), "dropped": dropped, "splits": {}}
    reports_dir = Path(params.paths.reports_dir)
    with remove_on_failure([reports_dir / PREPARE_FILE]), atomic_directory(params.paths.prepared_dir) as output_dir:
        for split in SPLITS:
            selected = splits == split
            split_images, split_labels = images[selected], labels[selected]
            np.savez(output_dir / f"{split}.npz", images=split_images, labels=split_labels)

            counts = class_counts(split_labels)
            summary["splits"][split] = {"rows": int(selected.sum()), "per_class": counts}
            log.info("split %s: images %s, per class %s", split, split_images.shape, counts)

        write_json_atomic(output_dir / SUMMARY_FILE, summary)
        write_json_atomic(reports_dir / PREPARE_FILE, {"dropped": dropped, "rows": {split: summary["splits"][split]["rows"] for split in SPLITS}})
    return summary


def rows_to_keep(images: np.ndarray, labels: np.ndarray, splits: np.ndarray, policies: PrepareParams) -> tuple[np.ndarray, dict[str, int]]:
    """Apply the `prepare.drop_*` data-quality policies; return the rows to keep and the count each policy drops.

    A row matched by several policies counts once per policy; `total_rows` counts it once.
    """
    keep = np.ones(len(images), dtype=bool)
    dropped = {"blank_images": 0, "cross_split_duplicates": 0, "conflicting_labels": 0, "total_rows": 0}
    if not (policies.drop_blank_images or policies.drop_cross_split_duplicates or policies.drop_conflicting_labels):
        return keep, dropped

    masks = quality_masks(images, labels, splits)
    selected = {
        "blank_images": masks.blank if policies.drop_blank_images else None,
        # Only the train copies go: val and test stay as published.
        "cross_split_duplicates": masks.cross_split & (splits == "train") if policies.drop_cross_split_duplicates else None,
        "conflicting_labels": masks.conflicting if policies.drop_conflicting_labels else None,
    }
    for policy, rows in selected.items():
        if rows is not None:
            dropped[policy] = int(rows.sum())
            keep &= ~rows
    dropped["total_rows"] = int((~keep).sum())
    log.info("data-quality policies dropped %s", dropped)
    return keep, dropped


def load_split(prepared_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split as model inputs: images scaled to float32 [0, 1], one-hot labels.

    Shapes: images (n, 48, 48, 1), labels (n, 7).
    """
    path = Path(prepared_dir) / f"{split}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"prepared split not found: {path}; run `fer prepare` (or `dvc repro prepare`) first")

    with np.load(path) as arrays:
        images = arrays["images"].astype(np.float32) / 255.0
        labels = one_hot(arrays["labels"])
    return images, labels


def load_summary(prepared_dir: str | Path) -> dict[str, Any]:
    """Read `summary.json` of the prepared data."""
    path = Path(prepared_dir) / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `fer prepare` (or `dvc repro prepare`) first")
    return json.loads(path.read_text(encoding="utf-8"))


def one_hot(labels: np.ndarray) -> np.ndarray:
    """Encode integer labels 0-6 as float32 rows of length 7, whatever labels occur."""
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"labels must be in 0-{NUM_CLASSES - 1}, found {labels.min()}-{labels.max()}")
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def class_counts(labels: np.ndarray) -> dict[str, int]:
    """Count labels per emotion name (all 7 names, zeros included)."""
    counts = np.bincount(labels.astype(np.int64), minlength=NUM_CLASSES)
    return {emotion: int(count) for emotion, count in zip(EMOTIONS, counts)}


def file_md5(path: str | Path) -> str:
    """MD5 of a file's bytes: the hash DVC 3 records for a tracked file."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
