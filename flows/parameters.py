"""Typed parameters of flow `fer`, with defaults from `params.yaml`.

Each flow parameter overrides one key of `params.yaml`. The types carry their
ranges, so Prefect writes them into the deployment's parameter schema and the
server rejects a wrong type or an out-of-range value before it creates a run:

    prefect deployment run fer/train -p epochs=0
    -> Error creating flow run: Validation failed for field 'epochs'. Failure reason: 0 is less than the minimum of 1
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from fer_pipeline.params import Params, load_params

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# `strict` rejects "3" for an int and true for an int instead of converting them.
PositiveInt = Annotated[int, Field(strict=True, ge=1)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0)]
# NumPy and Keras accept only seeds in 0 to 2**32 - 1.
Seed = Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)]
Filters = Annotated[list[PositiveInt], Field(min_length=1)]

# Flow parameter -> the `params.yaml` key it overrides.
PARAMS_KEYS: dict[str, str] = {
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "learning_rate": "train.learning_rate",
    "seed": "train.seed",
    "filters": "model.filters",
    "kernel_size": "model.kernel_size",
    "dense_units": "model.dense_units",
}

# Read on import. Each run of deployment fer/train imports the flow again in
# its own process, so the run uses the current params.yaml.
# NOTE: the UI's run form shows the defaults of when the runner started; restart
# it (`make orchestrator-stop`, `make orchestrator`) after editing params.yaml.
DEFAULTS = load_params(PROJECT_ROOT / "params.yaml")


def apply(params: Params, values: dict[str, Any]) -> Params:
    """Return `params` with each flow parameter's value set on its `params.yaml` key.

    The sections' own checks run again, so the result is as valid as a loaded
    `params.yaml`.
    """
    changes: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        if name not in PARAMS_KEYS:
            raise ValueError(f"unknown flow parameter {name!r}; flow parameters are {sorted(PARAMS_KEYS)}")
        section, key = PARAMS_KEYS[name].split(".")
        changes.setdefault(section, {})[key] = tuple(value) if isinstance(value, list) else value

    sections = {section: dataclasses.replace(getattr(params, section), **keys) for section, keys in changes.items()}
    return dataclasses.replace(params, **sections)
