"""All stages in order in one process: the `fer run` command and the MLproject `main` entry point.

DVC runs the same stage functions one process each (`dvc repro`); this path
skips DVC's caching and always runs every stage.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fer_pipeline.params import Params

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("validate", "prepare", "train", "evaluate", "register")


def run_stage(stage: str, params: Params, root: str | Path = ".") -> Any:
    """Run one stage by name. Heavy imports (TensorFlow, MLflow) load only for the stages that need them."""
    if stage == "validate":
        from fer_pipeline.validate import run_validate

        return run_validate(params)
    if stage == "prepare":
        from fer_pipeline.prepare import run_prepare

        return run_prepare(params)
    if stage == "train":
        from fer_pipeline.train import run_train

        return run_train(params, root)
    if stage == "evaluate":
        from fer_pipeline.evaluate import run_evaluate

        return run_evaluate(params, root)
    if stage == "register":
        from fer_pipeline.register import run_register

        return run_register(params, root)
    raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")


def run_pipeline(params: Params, root: str | Path = ".") -> dict[str, Any]:
    """Run validate, prepare, train, evaluate and register; stop at the first failure."""
    results = {}
    for stage in STAGES:
        log.info("stage %s: starting", stage)
        results[stage] = run_stage(stage, params, root)
        log.info("stage %s: done", stage)
    return results
