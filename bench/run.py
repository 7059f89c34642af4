"""Benchmarks on the full FER-2013 CSV, each a ratio against a baseline measured in the same run.

    python bench/run.py [parse] [validate] [train] [memory]     (default: all four)

- parse: CSV -> uint8 image arrays, the pipeline's reader against the usual
  notebook code (pandas read_csv, then str.split per row into np.array).
- validate: the whole validation suite (great-expectations checkpoint with the
  schema, domain and per-split rules, then the data-quality checks) against the
  time to read the CSV alone.
- train: images/s over one epoch of the reference model: the `train` stage
  (loading, fit, MLflow logging, model logging, reports) against a plain
  `model.fit` on in-memory NumPy arrays.
- memory: peak resident memory of each stage run as its own process (`fer <stage>`)
  on the full data with 1 epoch.

Prints a Markdown table per benchmark; docs/benchmarks.md records the numbers.
The full CSV is read from FER_FULL_CSV or ../shared/data/fer2013.csv.gz.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FULL_CSV = Path(os.environ.get("FER_FULL_CSV", PROJECT_ROOT.parent / "shared" / "data" / "fer2013.csv.gz"))
BIN = Path(sys.executable).parent


def bench_parse() -> None:
    from fer_pipeline.raw_data import parse_pixels, read_raw_csv

    with Timer() as baseline_time:
        frame = pd.read_csv(FULL_CSV)
        baseline = np.array([np.array(row.split(), dtype=np.uint8) for row in frame["pixels"]])

    with Timer() as pipeline_time:
        images = parse_pixels(read_raw_csv(FULL_CSV)["pixels"])

    assert np.array_equal(images.reshape(len(images), -1), baseline), "the two parsers disagree"
    print("\n| CSV -> uint8 arrays (35,887 rows) | wall s | CPU s |\n| --- | --- | --- |")
    print(f"| notebook: read_csv + str.split per row | {baseline_time} |")
    print(f"| fer_pipeline.raw_data | {pipeline_time} |")
    print(f"| speed-up (wall, CPU) | {baseline_time.wall / pipeline_time.wall:.2f}x | {baseline_time.cpu / pipeline_time.cpu:.2f}x |")


class Timer:
    """Wall and CPU seconds of a block. CPU time (this process, all threads) stays
    meaningful when other work shares the cores; wall time does not."""

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu

    def __str__(self) -> str:
        return f"{self.wall:.2f} | {self.cpu:.2f}"


def bench_validate() -> None:
    from fer_pipeline.raw_data import read_raw_csv
    from fer_pipeline.validate import load_suite, validate_frame

    load_suite()  # great-expectations' imports are not part of either measurement
    with Timer() as read_time:
        frame = read_raw_csv(FULL_CSV)

    with Timer() as suite_time:
        report, _ = validate_frame(frame, FULL_CSV)

    assert report.quality["duplicates"]["groups"] == 1516, "the quality checks found other figures"
    print("\n| validation of the full CSV | wall s | CPU s |\n| --- | --- | --- |")
    print(f"| read the CSV alone (`raw_data.read_raw_csv`) | {read_time} |")
    print(f"| whole suite: checkpoint ({report.rules_checked} rules) + data-quality checks | {suite_time} |")
    print(f"| suite / read (wall, CPU) | {suite_time.wall / read_time.wall:.2f}x | {suite_time.cpu / read_time.cpu:.2f}x |")


def bench_train(project: Path) -> None:
    import keras

    from fer_pipeline.model import build_model, compile_model
    from fer_pipeline.params import load_params
    from fer_pipeline.prepare import load_split
    from fer_pipeline.train import run_train

    os.chdir(project)
    params = load_params("params.yaml", ["train.epochs=1"])
    images, labels = load_split(params.paths.prepared_dir, "train")
    val_images, val_labels = load_split(params.paths.prepared_dir, "val")

    keras.utils.set_random_seed(params.train.seed)
    model = compile_model(build_model(params.model), params.train)
    start = time.perf_counter()
    model.fit(images, labels, validation_data=(val_images, val_labels), epochs=1, batch_size=params.train.batch_size, verbose=2)
    plain_seconds = time.perf_counter() - start
    del model, images, labels, val_images, val_labels

    start = time.perf_counter()
    run_train(params, project)
    stage_seconds = time.perf_counter() - start

    rows = 28709
    print("\n| one epoch on the full train split | seconds | images/s |\n| --- | --- | --- |")
    print(f"| plain model.fit on in-memory arrays | {plain_seconds:.1f} | {rows / plain_seconds:.0f} |")
    print(f"| train stage (load, fit, MLflow, model logging, reports) | {stage_seconds:.1f} | {rows / stage_seconds:.0f} |")
    print(f"| stage / plain throughput | {plain_seconds / stage_seconds:.2f}x | |")


def bench_memory(project: Path) -> None:
    print("\n| stage (full data, 1 epoch) | wall seconds | peak RSS (MiB) |\n| --- | --- | --- |")
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for stage in ("validate", "prepare", "train", "evaluate", "register"):
        command = [str(BIN / "fer"), "--set", "train.epochs=1", stage]
        start = time.perf_counter()
        # Each stage runs in a fresh child that waits alone, so ru_maxrss of
        # RUSAGE_CHILDREN after it is that stage's peak (children only grow it).
        child = subprocess.run(
            [sys.executable, "-c", _MEASURE_CHILD, *command], cwd=project, env=environment, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        if child.returncode != 0:
            raise RuntimeError(f"{stage} failed:\n{child.stderr[-3000:]}")
        print(f"| {stage} | {seconds:.1f} | {int(child.stdout.strip().splitlines()[-1]) / 1024:.0f} |")


_MEASURE_CHILD = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def make_full_project() -> Path:
    """Create a temporary project with the full CSV imported, validated and prepared."""
    project = Path(tempfile.mkdtemp(prefix="fer-bench-"))
    (project / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    os.environ["MLFLOW_TRACKING_URI"] = environment["MLFLOW_TRACKING_URI"]
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=project, check=True, env=environment)
    subprocess.run([str(BIN / "fer"), "data", "import", str(FULL_CSV)], cwd=project, check=True, env=environment, capture_output=True)
    for stage in ("validate", "prepare"):
        subprocess.run([str(BIN / "fer"), stage], cwd=project, check=True, env=environment, capture_output=True)
    return project


def main(selected: list[str]) -> None:
    if not FULL_CSV.is_file():
        sys.exit(f"full FER-2013 CSV not found at {FULL_CSV}; set FER_FULL_CSV")
    selected = selected or ["parse", "validate", "train", "memory"]
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")

    if "parse" in selected:
        bench_parse()
    if "validate" in selected:
        bench_validate()
    if "train" in selected or "memory" in selected:
        project = make_full_project()
        if "memory" in selected:
            bench_memory(project)
        if "train" in selected:
            bench_train(project)


if __name__ == "__main__":
    main(sys.argv[1:])
