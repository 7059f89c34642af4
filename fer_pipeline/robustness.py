"""Robustness evaluation: score a model on corrupted copies of one split, one copy per condition.

The conditions and their parameters come from the `robustness` section of
params.yaml: low light, glasses, head roll and yaw, low resolution. The
`corruptions` module documents each parameter. For each condition the result
contains accuracy and macro-F1 and their drop from the clean split, so
`evaluate` logs metrics such as `test/robust/low_light_1/accuracy_drop`.
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from fer_pipeline import corruptions
from fer_pipeline.labels import NUM_CLASSES
from fer_pipeline.metrics import split_metrics
from fer_pipeline.model import predict_probabilities
from fer_pipeline.params import EvaluateParams, RobustnessParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Condition:
    """One named corruption with its parameters bound: `apply(images)` returns the corrupted copy."""

    name: str
    kind: str
    apply: Callable[[np.ndarray], np.ndarray]


def build_conditions(robustness: RobustnessParams) -> list[Condition]:
    """Turn the `robustness` params into conditions, in the order params.yaml lists them."""
    conditions = []
    for name, values in robustness.low_light.items():
        corrupt = functools.partial(
            corruptions.low_light, gamma=values.gamma, brightness=values.brightness,
            read_noise=values.read_noise, shot_noise=values.shot_noise, seed=condition_seed(robustness.seed, name),
        )
        conditions.append(Condition(name, "low_light", corrupt))
    for name, values in robustness.occlusion.items():
        corrupt = functools.partial(
            corruptions.occlude_eyes, center_row=values.center_row, height=values.height, width=values.width,
            intensity=values.intensity, opacity=values.opacity, shape=values.shape,
        )
        conditions.append(Condition(name, "occlusion", corrupt))
    for name, values in robustness.rotation.items():
        conditions.append(Condition(name, "rotation", functools.partial(corruptions.rotate, degrees=values.degrees)))
    for name, values in robustness.perspective.items():
        conditions.append(Condition(name, "perspective", functools.partial(corruptions.perspective_yaw, degrees=values.degrees)))
    for name, values in robustness.low_resolution.items():
        conditions.append(Condition(name, "low_resolution", functools.partial(corruptions.low_resolution, size=values.size)))
    return conditions


def condition_seed(seed: int, name: str) -> list[int]:
    """Seed of one condition's noise: the same for a name whatever other conditions exist."""
    return [seed, zlib.crc32(name.encode("utf-8"))]


def evaluate_robustness(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    clean: dict[str, Any],
    robustness: RobustnessParams,
    evaluate: EvaluateParams,
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Score every condition on `images` (float in [0, 1], shape (n, 48, 48, 1)) with integer `labels`.

    `clean` is the split's result from `metrics.split_metrics`. Returns the
    scores per condition and, per condition and for `clean`, the example
    faces that the report shows (the same rows in every condition).
    """
    example_rows = pick_examples(labels, robustness.examples)
    scores: dict[str, dict[str, float]] = {}
    examples = {"clean": images[example_rows]}

    for condition in build_conditions(robustness):
        corrupted = condition.apply(images)
        probabilities = predict_probabilities(model, corrupted, evaluate.batch_size, evaluate.tta_flip)
        result = split_metrics(labels, probabilities)

        scores[condition.name] = {
            "accuracy": result["accuracy"],
            "macro_f1": result["macro_f1"],
            "accuracy_drop": clean["accuracy"] - result["accuracy"],
            "macro_f1_drop": clean["macro_f1"] - result["macro_f1"],
        }
        examples[condition.name] = corrupted[example_rows]
        log.info(
            "%s %s: accuracy %.4f (drop %.4f), macro-F1 %.4f (drop %.4f)", robustness.split, condition.name,
            result["accuracy"], scores[condition.name]["accuracy_drop"], result["macro_f1"], scores[condition.name]["macro_f1_drop"],
        )
    return scores, examples


def pick_examples(labels: np.ndarray, count: int) -> np.ndarray:
    """Pick `count` row indexes, taking the next unused row of each class in turn, so examples span the classes."""
    rows_by_class = [list(np.flatnonzero(labels == label)) for label in range(NUM_CLASSES)]
    picked: list[int] = []
    while len(picked) < min(count, labels.size):
        for rows in rows_by_class:
            if rows and len(picked) < count:
                picked.append(int(rows.pop(0)))
    return np.asarray(sorted(picked), dtype=np.int64)
