"""Typed pipeline parameters read from `params.yaml`.

Every section of the file maps to a frozen dataclass below. Unknown keys,
missing keys and values of the wrong type raise `ValueError` naming the key,
so a typo in `params.yaml` or in `fer --set` fails before any stage runs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fer_pipeline.labels import SPLITS


@dataclass(frozen=True)
class PathParams:
    raw_csv: str
    prepared_dir: str
    model_dir: str
    reports_dir: str


@dataclass(frozen=True)
class ValidateParams:
    max_rows_reported: int

    def __post_init__(self) -> None:
        _require_positive("validate.max_rows_reported", self.max_rows_reported)


@dataclass(frozen=True)
class PrepareParams:
    image_size: int

    def __post_init__(self) -> None:
        if self.image_size != 48:
            raise ValueError(
                f"prepare.image_size must be 48 (FER-2013 images are 48x48), got {self.image_size}"
            )


@dataclass(frozen=True)
class ModelParams:
    filters: tuple[int, ...]
    kernel_size: int
    dense_units: int

    def __post_init__(self) -> None:
        if not self.filters:
            raise ValueError("model.filters must list at least one block, got []")
        for count in self.filters:
            _require_positive("model.filters", count)
        _require_positive("model.kernel_size", self.kernel_size)
        _require_positive("model.dense_units", self.dense_units)


@dataclass(frozen=True)
class TrainParams:
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int

    def __post_init__(self) -> None:
        _require_positive("train.epochs", self.epochs)
        _require_positive("train.batch_size", self.batch_size)
        _require_positive("train.learning_rate", self.learning_rate)


@dataclass(frozen=True)
class EvaluateParams:
    splits: tuple[str, ...]
    batch_size: int

    def __post_init__(self) -> None:
        unknown = [split for split in self.splits if split not in SPLITS]
        if unknown:
            raise ValueError(f"evaluate.splits contains {unknown}; valid splits are {list(SPLITS)}")
        _require_positive("evaluate.batch_size", self.batch_size)


@dataclass(frozen=True)
class MlflowParams:
    experiment: str
    registered_model: str
    champion_alias: str


@dataclass(frozen=True)
class Params:
    paths: PathParams
    validate: ValidateParams
    prepare: PrepareParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    mlflow: MlflowParams

    def flat(self) -> dict[str, Any]:
        """Return every param as `section.key` -> value, the way MLflow logs them."""
        flat: dict[str, Any] = {}
        for section in dataclasses.fields(self):
            values = dataclasses.asdict(getattr(self, section.name))
            for key, value in values.items():
                flat[f"{section.name}.{key}"] = list(value) if isinstance(value, tuple) else value
        return flat


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read `params.yaml`, apply `key=value` overrides, and check every key and type."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}; run from the project root")

    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must be a mapping of sections, got {type(raw).__name__}")

    for override in overrides or []:
        _apply_override(raw, override)

    return _build(Params, raw, prefix="")


def parse_override(override: str) -> tuple[str, Any]:
    """Split `train.epochs=3` into its key and its YAML-parsed value."""
    key, separator, text = override.partition("=")
    if not separator or "." not in key:
        raise ValueError(f"invalid override {override!r}: expected section.key=value, e.g. train.epochs=3")
    return key.strip(), yaml.safe_load(text)


def _apply_override(raw: dict, override: str) -> None:
    key, value = parse_override(override)
    section, name = key.split(".", 1)
    if section not in raw or not isinstance(raw[section], dict) or name not in raw[section]:
        raise ValueError(f"invalid override {override!r}: no param {key!r} in params.yaml")
    raw[section][name] = value


def _build(cls: type, values: Any, prefix: str) -> Any:
    label = prefix.rstrip(".") or "params.yaml"
    if not isinstance(values, dict):
        raise ValueError(f"{label} must be a mapping, got {values!r}")

    fields = {field.name: field for field in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown param {prefix}{unknown[0]}; valid keys of {label}: {sorted(fields)}")
    missing = sorted(set(fields) - set(values))
    if missing:
        raise ValueError(f"missing param {prefix}{missing[0]} in params.yaml")

    kwargs = {name: _convert(hints[name], values[name], f"{prefix}{name}") for name in fields}
    return cls(**kwargs)


def _convert(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=f"{key}.")

    origin = typing.get_origin(hint)
    if origin is tuple:
        item_type = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ValueError(f"param {key} must be a list, got {value!r}")
        return tuple(_convert(item_type, item, key) for item in value)

    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(hint, (type, types.GenericAlias)) or not isinstance(value, hint) or isinstance(value, bool):
        raise ValueError(f"param {key} must be {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def _require_positive(key: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"param {key} must be positive, got {value}")
