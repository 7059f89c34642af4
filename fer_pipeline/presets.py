"""Training presets: named sets of param values that the top-level `preset` param selects.

A preset is only params. `presets.NAME` in params.yaml maps sections to the
values that preset sets, and `resolve_preset` writes them into those sections
before the params are type-checked. `paper` is the reference: it lists the
defaults of the sections themselves, so `preset: paper` changes nothing.

A preset sets a value only where the section still contains the `paper` value.
A value changed in params.yaml, with `fer --set` or with `dvc exp run -S`
therefore wins over the preset.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

log = logging.getLogger(__name__)

REFERENCE_PRESET = "paper"


def resolve_preset(raw: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the raw params with the selected preset applied and the `presets` table removed."""
    resolved = copy.deepcopy(raw)
    name = resolved.get("preset")
    presets = resolved.pop("presets", None)
    if name is None or presets is None:
        raise ValueError("missing param preset or presets in params.yaml; copy both from the project's params.yaml")
    _check_presets(name, presets)

    reference = presets[REFERENCE_PRESET] or {}
    applied, kept = {}, {}
    for section, key, value in _preset_values(presets[name]):
        if section not in resolved or not isinstance(resolved[section], dict) or key not in resolved[section]:
            raise ValueError(f"presets.{name} sets {section}.{key}, which is not a param in params.yaml")
        current = resolved[section][key]
        # NOTE: a value set explicitly to the paper default cannot be told
        # apart from the default, so the preset replaces it. To turn a preset's
        # value off, change the table: presets.robust.augment.enabled=false.
        if current == reference[section][key]:
            resolved[section][key] = value
            applied[f"{section}.{key}"] = value
        elif current != value:
            kept[f"{section}.{key}"] = (current, value)

    if name != REFERENCE_PRESET:
        log.info("preset %s sets %s", name, ", ".join(f"{key}={value!r}" for key, value in applied.items()) or "nothing")
        for key, (current, value) in kept.items():
            log.info("preset %s: keeping %s=%r, set explicitly, instead of the preset's %r", name, key, current, value)
    return resolved


def _check_presets(name: Any, presets: Any) -> None:
    if not isinstance(presets, dict) or REFERENCE_PRESET not in presets:
        raise ValueError(f"params.yaml presets must be a mapping that contains the reference preset {REFERENCE_PRESET!r}")
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; presets in params.yaml: {', '.join(presets)}")

    # The reference must list every key another preset sets, because its value
    # is what distinguishes an explicit change from a default.
    reference = presets[REFERENCE_PRESET] or {}
    _preset_values(reference, f"presets.{REFERENCE_PRESET}")
    for preset, values in presets.items():
        for section, key, _ in _preset_values(values, f"presets.{preset}"):
            if not isinstance(reference.get(section), dict) or key not in reference[section]:
                raise ValueError(
                    f"presets.{preset} sets {section}.{key} but presets.{REFERENCE_PRESET} has no value for it; "
                    f"add the default to presets.{REFERENCE_PRESET}.{section}"
                )


def _preset_values(values: Any, label: str = "preset") -> list[tuple[str, str, Any]]:
    if values is None:
        return []
    if not isinstance(values, dict) or not all(isinstance(keys, dict) for keys in values.values()):
        raise ValueError(f"{label} must map sections to key: value mappings, got {values!r}")
    return [(section, key, value) for section, keys in values.items() for key, value in keys.items()]
