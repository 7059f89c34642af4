"""Typed pipeline parameters read from `params.yaml`.

Every section of the file maps to a frozen dataclass below. Unknown keys,
missing keys and values of the wrong type raise `ValueError` naming the key,
so a typo in `params.yaml` or in `fer --set` fails before any stage runs.
The top-level `preset` names a training preset, whose values
`presets.resolve_preset` writes into the sections before these checks.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fer_pipeline.labels import SPLITS
from fer_pipeline.presets import resolve_preset

# `train.class_weight`: none, scikit-learn's "balanced" weights
# n_samples / (n_classes * class_count), or their square root, which lifts the
# rare `disgust` class less sharply.
CLASS_WEIGHTS = ("none", "balanced", "balanced_sqrt")
OCCLUSION_SHAPES = ("band", "lenses")
# A robustness condition's name is part of MLflow metric names and DVC metric keys.
CONDITION_NAME = re.compile(r"[a-z0-9_]+")


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
    drop_blank_images: bool
    drop_cross_split_duplicates: bool
    drop_conflicting_labels: bool

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
    convs_per_block: int
    block_dropout: float
    dense_dropout: float

    def __post_init__(self) -> None:
        if not self.filters:
            raise ValueError("model.filters must list at least one block, got []")
        for count in self.filters:
            _require_positive("model.filters", count)
        _require_positive("model.kernel_size", self.kernel_size)
        _require_positive("model.dense_units", self.dense_units)
        _require_positive("model.convs_per_block", self.convs_per_block)
        _require_fraction("model.block_dropout", self.block_dropout, below_one=True)
        _require_fraction("model.dense_dropout", self.dense_dropout, below_one=True)


@dataclass(frozen=True)
class TrainParams:
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    early_stopping_patience: int
    reduce_lr_patience: int
    class_weight: str

    def __post_init__(self) -> None:
        _require_positive("train.epochs", self.epochs)
        _require_positive("train.batch_size", self.batch_size)
        _require_positive("train.learning_rate", self.learning_rate)
        _require_non_negative("train.early_stopping_patience", self.early_stopping_patience)
        _require_non_negative("train.reduce_lr_patience", self.reduce_lr_patience)
        if self.class_weight not in CLASS_WEIGHTS:
            raise ValueError(f"param train.class_weight must be one of {list(CLASS_WEIGHTS)}, got {self.class_weight!r}")


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random training augmentation; each face draws its own values."""

    enabled: bool
    probability: float
    brightness: tuple[float, ...]
    contrast: tuple[float, ...]
    gamma: tuple[float, ...]
    low_light_probability: float
    low_light_brightness: tuple[float, ...]
    low_light_gamma: tuple[float, ...]
    read_noise: float
    shot_noise: float
    rotation_degrees: float
    shift: float
    zoom: float
    flip: bool
    occlusion_probability: float

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "gamma", "low_light_brightness", "low_light_gamma"):
            _require_range(f"augment.{name}", getattr(self, name))
        # Gamma is drawn on a log scale, which needs a positive lower end.
        _require_positive("augment.gamma low end", self.gamma[0])
        _require_positive("augment.low_light_gamma low end", self.low_light_gamma[0])
        _require_fraction("augment.low_light_probability", self.low_light_probability)
        _require_fraction("augment.probability", self.probability)
        _require_non_negative("augment.read_noise", self.read_noise)
        _require_non_negative("augment.shot_noise", self.shot_noise)
        if not 0 <= self.rotation_degrees <= 180:
            raise ValueError(f"param augment.rotation_degrees must be 0-180, got {self.rotation_degrees}")
        _require_fraction("augment.shift", self.shift, below_one=True)
        _require_fraction("augment.zoom", self.zoom, below_one=True)
        _require_fraction("augment.occlusion_probability", self.occlusion_probability)


@dataclass(frozen=True)
class EvaluateParams:
    splits: tuple[str, ...]
    batch_size: int
    tta_flip: bool

    def __post_init__(self) -> None:
        unknown = [split for split in self.splits if split not in SPLITS]
        if unknown:
            raise ValueError(f"evaluate.splits contains {unknown}; valid splits are {list(SPLITS)}")
        _require_positive("evaluate.batch_size", self.batch_size)


@dataclass(frozen=True)
class LowLightParams:
    gamma: float
    brightness: float
    read_noise: float
    shot_noise: float

    def __post_init__(self) -> None:
        _require_positive("gamma", self.gamma)
        _require_fraction("brightness", self.brightness)
        _require_non_negative("read_noise", self.read_noise)
        _require_non_negative("shot_noise", self.shot_noise)


@dataclass(frozen=True)
class OcclusionParams:
    center_row: float
    height: float
    width: float
    intensity: float
    opacity: float
    shape: str

    def __post_init__(self) -> None:
        for name in ("center_row", "height", "width", "intensity", "opacity"):
            _require_fraction(name, getattr(self, name))
        if self.shape not in OCCLUSION_SHAPES:
            raise ValueError(f"param shape must be one of {list(OCCLUSION_SHAPES)}, got {self.shape!r}")


@dataclass(frozen=True)
class AngleParams:
    degrees: float

    def __post_init__(self) -> None:
        if not -90 < self.degrees < 90:
            raise ValueError(f"param degrees must lie between -90 and 90, got {self.degrees}")


@dataclass(frozen=True)
class LowResolutionParams:
    size: int

    def __post_init__(self) -> None:
        if self.size <= 0 or self.size >= 48 or 48 % self.size:
            raise ValueError(f"param size must divide 48 and be smaller, got {self.size}; use 24, 16 or 12")


@dataclass(frozen=True)
class RobustnessParams:
    """The corrupted copies of one split that `evaluate` scores; each mapping is condition name -> parameters."""

    split: str
    seed: int
    examples: int
    low_light: dict[str, LowLightParams]
    occlusion: dict[str, OcclusionParams]
    rotation: dict[str, AngleParams]
    perspective: dict[str, AngleParams]
    low_resolution: dict[str, LowResolutionParams]

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"param robustness.split must be one of {list(SPLITS)}, got {self.split!r}")
        _require_non_negative("robustness.examples", self.examples)
        seen: set[str] = set()
        for kind in ("low_light", "occlusion", "rotation", "perspective", "low_resolution"):
            for name in getattr(self, kind):
                if not CONDITION_NAME.fullmatch(name) or name == "clean":
                    raise ValueError(
                        f"robustness.{kind} has invalid condition name {name!r}; use lowercase letters, digits "
                        "and underscores (it becomes an MLflow metric name), and not 'clean'"
                    )
                if name in seen:
                    raise ValueError(f"robustness condition {name!r} is defined twice; condition names must be unique")
                seen.add(name)


@dataclass(frozen=True)
class MlflowParams:
    experiment: str
    registered_model: str
    champion_alias: str


@dataclass(frozen=True)
class Params:
    preset: str
    paths: PathParams
    validate: ValidateParams
    prepare: PrepareParams
    model: ModelParams
    train: TrainParams
    augment: AugmentParams
    evaluate: EvaluateParams
    robustness: RobustnessParams
    mlflow: MlflowParams

    def flat(self) -> dict[str, Any]:
        """Return every param as a dotted key -> value (`train.epochs`, `preset`), the way MLflow logs them.

        Values are those after the preset was applied, so runs of different
        presets line up key by key in MLflow's compare view.
        """
        flat: dict[str, Any] = {"preset": self.preset}
        for section in dataclasses.fields(self):
            if section.name != "preset":
                _flatten_into(flat, section.name, dataclasses.asdict(getattr(self, section.name)))
        return flat


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read `params.yaml`, apply `key=value` overrides and the chosen preset, and check every key and type."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}; run from the project root")

    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must be a mapping of sections, got {type(raw).__name__}")

    for override in overrides or []:
        _apply_override(raw, override)
    raw = resolve_preset(raw)

    return _build(Params, raw, prefix="")


def parse_override(override: str) -> tuple[str, Any]:
    """Split `train.epochs=3` (or the top-level `preset=robust`) into its key and its YAML-parsed value."""
    key, separator, text = override.partition("=")
    if not separator or not key.strip():
        raise ValueError(f"invalid override {override!r}: expected section.key=value, e.g. train.epochs=3")
    return key.strip(), yaml.safe_load(text)


def _apply_override(raw: dict, override: str) -> None:
    key, value = parse_override(override)
    *parents, name = key.split(".")
    if not parents and (name not in raw or isinstance(raw[name], dict)):
        raise ValueError(f"invalid override {override!r}: expected section.key=value or preset=NAME, e.g. train.epochs=3")

    # Walk nested mappings, so `robustness.low_light.low_light_1.gamma=2` works too.
    target = raw
    for part in parents:
        target = target.get(part) if isinstance(target, dict) else None
    if not isinstance(target, dict) or name not in target:
        raise ValueError(f"invalid override {override!r}: no param {key!r} in params.yaml")
    target[name] = value


def _flatten_into(flat: dict[str, Any], prefix: str, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            _flatten_into(flat, f"{prefix}.{key}", value)
        else:
            flat[f"{prefix}.{key}"] = list(value) if isinstance(value, tuple) else value


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
    try:
        return cls(**kwargs)
    except ValueError as error:
        # A robustness condition's own checks do not know its name: add it.
        if prefix and label not in str(error):
            raise ValueError(f"{label}: {error}") from None
        raise


def _convert(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=f"{key}.")

    origin = typing.get_origin(hint)
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ValueError(f"param {key} must be a mapping, got {value!r}")
        return {_convert(key_type, name, key): _convert(value_type, item, f"{key}.{name}") for name, item in value.items()}
    if origin is tuple:
        item_type = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ValueError(f"param {key} must be a list, got {value!r}")
        return tuple(_convert(item_type, item, key) for item in value)

    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"param {key} must be true or false, got {value!r}")
        return value
    if not isinstance(hint, (type, types.GenericAlias)) or not isinstance(value, hint) or isinstance(value, bool):
        raise ValueError(f"param {key} must be {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def _require_positive(key: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"param {key} must be positive, got {value}")


def _require_non_negative(key: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"param {key} must be 0 or more, got {value}")


def _require_fraction(key: str, value: float, below_one: bool = False) -> None:
    if value < 0 or value > 1 or (below_one and value == 1):
        upper = "below 1" if below_one else "at most 1"
        raise ValueError(f"param {key} must be 0 or more and {upper}, got {value}")


def _require_range(key: str, values: tuple[float, ...]) -> None:
    if len(values) != 2 or values[0] > values[1] or values[0] < 0:
        raise ValueError(f"param {key} must be [low, high] with 0 <= low <= high, got {list(values)}")
