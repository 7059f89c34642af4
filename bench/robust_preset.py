"""Cost of the robust preset's additions, each a ratio against a baseline measured in the same run.

    python bench/robust_preset.py [--train-images N]     (default: 4,096)

- augment: seconds per epoch of the reference model on the first N train
  images (the fastest of epochs 2 to 4). Augmented batches (`augment.enabled`,
  the robust preset's ranges) run against plain in-memory arrays (the paper
  preset). The augmentation alone, with no training, is timed as well.
- robustness: seconds to score the test split under every robustness
  condition of params.yaml against scoring it once, clean; with and without
  flip averaging (`evaluate.tta_flip`).
- large: seconds per epoch of the large preset's network against the
  reference network on the same images, batch 64 for both.

Reads the full FER-2013 CSV from FER_FULL_CSV or ../shared/data/fer2013.csv.gz
and falls back to the shipped sample. Prints Markdown tables for
docs/benchmarks.md. Weights are untrained: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FULL_CSV = Path(os.environ.get("FER_FULL_CSV", PROJECT_ROOT.parent / "shared" / "data" / "fer2013.csv.gz"))
SAMPLE_CSV = PROJECT_ROOT / "data" / "sample" / "fer2013-sample.csv.gz"
# The first epoch includes graph tracing. Of the others the fastest counts,
# which is the least disturbed by other work on the machine.
EPOCHS = 4


def load_splits(csv_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Parse the CSV into float images in [0, 1] and one-hot labels per split."""
    from fer_pipeline import raw_data
    from fer_pipeline.labels import USAGE_TO_SPLIT
    from fer_pipeline.prepare import one_hot

    frame = raw_data.read_raw_csv(csv_path)
    images = raw_data.parse_pixels(frame["pixels"]).astype(np.float32) / 255.0
    labels = frame["emotion"].astype(int).to_numpy()
    splits = frame["Usage"].map(USAGE_TO_SPLIT).to_numpy()
    return {split: (images[splits == split], one_hot(labels[splits == split])) for split in USAGE_TO_SPLIT.values()}


def bench_augment(params, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]) -> None:
    import keras

    from fer_pipeline.augment import AugmentedBatches, augment_batch
    from fer_pipeline.model import build_model, compile_model

    images, labels = train
    batch_size = params.train.batch_size

    def epoch_seconds(inputs: dict) -> float:
        keras.utils.set_random_seed(params.train.seed)
        model = compile_model(build_model(params.model), params.train)
        starts, seconds = [], []
        timer = keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: starts.append(time.perf_counter()),
            on_epoch_end=lambda epoch, logs: seconds.append(time.perf_counter() - starts[-1]),
        )
        model.fit(**inputs, validation_data=val, epochs=EPOCHS, callbacks=[timer], verbose=0)
        return min(seconds[1:])

    plain = epoch_seconds({"x": images, "y": labels, "batch_size": batch_size})
    augmented = epoch_seconds({"x": AugmentedBatches(images, labels, batch_size, params.augment, params.train.seed), "shuffle": False})

    generator = np.random.default_rng(0)
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        augment_batch(images[first : first + batch_size], params.augment, generator)
    alone = time.perf_counter() - start

    count = len(images)
    print(f"\n| one epoch, {count:,} train images, batch {batch_size} (+ val) | seconds |\n| --- | --- |")
    print(f"| plain arrays (paper preset) | {plain:.1f} |")
    print(f"| augmented batches (robust preset) | {augmented:.1f} |")
    print(f"| augmentation alone, no training | {alone:.1f} ({alone / count * 1000:.2f} per 1,000 images) |")
    print(f"| augmented / plain | {augmented / plain:.2f}x |")


def bench_robustness(params, test: tuple[np.ndarray, np.ndarray]) -> None:
    import dataclasses

    import keras

    from fer_pipeline.metrics import split_metrics
    from fer_pipeline.model import build_model, compile_model, predict_probabilities
    from fer_pipeline.robustness import build_conditions, evaluate_robustness

    images, one_hot_labels = test
    labels = one_hot_labels.argmax(axis=1)
    keras.utils.set_random_seed(params.train.seed)
    model = compile_model(build_model(params.model), params.train)
    predict_probabilities(model, images[:256], params.evaluate.batch_size)  # trace the predict function once

    print(f"\n| scoring the test split ({len(images):,} images) | seconds |\n| --- | --- |")
    for tta_flip in (False, True):
        evaluate = dataclasses.replace(params.evaluate, tta_flip=tta_flip)
        start = time.perf_counter()
        clean = split_metrics(labels, predict_probabilities(model, images, evaluate.batch_size, tta_flip))
        clean_seconds = time.perf_counter() - start

        start = time.perf_counter()
        evaluate_robustness(model, images, labels, clean, params.robustness, evaluate)
        robust_seconds = time.perf_counter() - start

        label = "with flip averaging" if tta_flip else "single view"
        conditions = len(build_conditions(params.robustness))
        print(f"| clean, {label} | {clean_seconds:.1f} |")
        print(f"| {conditions} robustness conditions, {label} | {robust_seconds:.1f} ({robust_seconds / clean_seconds:.1f}x clean) |")


def bench_large(params, train: tuple[np.ndarray, np.ndarray]) -> None:
    import keras

    from fer_pipeline.model import build_model, compile_model
    from fer_pipeline.params import load_params

    large = load_params(PROJECT_ROOT / "params.yaml", ["preset=large"])
    images, labels = train
    seconds = {}
    for name, model_params in (("reference (paper, robust)", params.model), ("large", large.model)):
        keras.utils.set_random_seed(params.train.seed)
        model = compile_model(build_model(model_params), params.train)
        starts, durations = [], []
        timer = keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: starts.append(time.perf_counter()),
            on_epoch_end=lambda epoch, logs: durations.append(time.perf_counter() - starts[-1]),
        )
        model.fit(images, labels, batch_size=params.train.batch_size, epochs=EPOCHS, callbacks=[timer], verbose=0)
        seconds[name] = (min(durations[1:]), model.count_params())

    print(f"\n| one epoch, {len(images):,} train images, batch {params.train.batch_size}, no val | parameters | seconds |\n| --- | --- | --- |")
    for name, (duration, parameters) in seconds.items():
        print(f"| {name} network | {parameters:,} | {duration:.1f} |")
    ratio = seconds["large"][0] / seconds["reference (paper, robust)"][0]
    print(f"| large / reference | | {ratio:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=4096, help="train images per timed epoch (default: 4096)")
    parser.add_argument("--large-images", type=int, default=1024, help="train images per timed epoch of the large network (default: 1024)")
    arguments = parser.parse_args()

    sys.path.insert(0, str(PROJECT_ROOT))
    from fer_pipeline.params import load_params

    csv_path = FULL_CSV if FULL_CSV.is_file() else SAMPLE_CSV
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; data: {csv_path.name}")
    params = load_params(PROJECT_ROOT / "params.yaml", ["preset=robust"])
    splits = load_splits(csv_path)

    train_images, train_labels = splits["train"]
    bench_augment(params, (train_images[: arguments.train_images], train_labels[: arguments.train_images]), splits["val"])
    bench_robustness(params, splits["test"])
    bench_large(params, (train_images[: arguments.large_images], train_labels[: arguments.large_images]))


if __name__ == "__main__":
    main()
