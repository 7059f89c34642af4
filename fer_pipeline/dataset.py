"""Put a FER-2013 CSV under DVC control as the pipeline's raw data, and draw the shipped sample.

`fer data import PATH` copies a CSV (plain or `.gz`) to `paths.raw_csv` and
runs `dvc add` on it; `fer data use-sample` does the same with the sample in
`data/sample/`. The source file is only read, never changed.
"""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from fer_pipeline.files import atomic_path
from fer_pipeline.labels import USAGE_TO_SPLIT
from fer_pipeline.params import Params
from fer_pipeline.raw_data import GZIP_MAGIC, read_raw_csv

log = logging.getLogger(__name__)

SAMPLE_CSV = Path("data/sample/fer2013-sample.csv.gz")

# Rows drawn per split for the shipped sample, and the minimum per class so
# that the rare `disgust` class appears in every split.
SAMPLE_ROWS = {"train": 1400, "val": 300, "test": 300}
SAMPLE_MIN_PER_CLASS = 12
SAMPLE_SEED = 2013


def import_csv(source: str | Path, params: Params, run_dvc: bool = True) -> Path:
    """Copy `source` (decompressed if gzip) to the raw CSV path and track it with DVC."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"CSV to import not found: {source}")
    target = Path(params.paths.raw_csv)

    data = source.read_bytes()
    if data.startswith(GZIP_MAGIC):
        data = gzip.decompress(data)
    if not data.startswith(b"\xef\xbb\xbf") and not data.lstrip()[:1].isalpha():
        raise ValueError(f"{source} does not start with a CSV header line; expected 'emotion,pixels,Usage'")

    with atomic_path(target) as temporary:
        temporary.write_bytes(data)
    log.info("copied %s to %s (%d bytes)", source, target, len(data))

    if run_dvc:
        dvc_add(target)
    return target


def dvc_add(path: Path) -> None:
    """Run `dvc add` so the file's hash goes to `PATH.dvc` and its content to the DVC cache."""
    command = [sys.executable, "-m", "dvc", "add", str(path)]
    log.info("running %s", " ".join(command[2:]))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`dvc add {path}` failed with exit code {result.returncode}:\n{result.stderr.strip()}")
    log.info("%s is tracked by DVC in %s.dvc; commit that file if `git status` shows it changed", path, path)


def draw_sample(frame: pd.DataFrame, rows_per_split: dict[str, int], min_per_class: int, seed: int) -> pd.DataFrame:
    """Draw a stratified sample: per split, classes in proportion, at least `min_per_class` each.

    Rows keep their original order, so the sample reads like the full file.
    """
    generator = np.random.default_rng(seed)
    chosen: list[int] = []
    for usage, split in USAGE_TO_SPLIT.items():
        part = frame[frame["Usage"] == usage]
        class_sizes = part["emotion"].value_counts().sort_index()
        quotas = np.maximum(min_per_class, np.floor(class_sizes / class_sizes.sum() * rows_per_split[split])).astype(int)
        for label, quota in zip(class_sizes.index, quotas):
            rows = part.index[part["emotion"] == label].to_numpy()
            chosen.extend(generator.choice(rows, size=min(quota, rows.size), replace=False).tolist())
    return frame.loc[sorted(chosen)]


def write_sample(source: str | Path, target: str | Path = SAMPLE_CSV) -> pd.DataFrame:
    """Draw the shipped sample from the full FER-2013 CSV and write it gzip-compressed."""
    sample = draw_sample(read_raw_csv(source), SAMPLE_ROWS, SAMPLE_MIN_PER_CLASS, SAMPLE_SEED)
    with atomic_path(target) as temporary:
        # No file name and mtime=0 in the gzip header keep the bytes identical across runs.
        with open(temporary, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as handle:
            handle.write(sample.to_csv(index=False, lineterminator="\n").encode("ascii"))
    log.info("wrote %d rows to %s", len(sample), target)
    return sample
