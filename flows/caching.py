"""Cache keys for the `validate` and `prepare` tasks, taken from what `dvc.yaml` declares per stage.

A key hashes the stage's params and the content (MD5) of the input files that
`dvc.yaml` lists for it, such as the raw CSV and the stage's source files.
Inputs that another stage writes are left out, because that stage's own key
covers them. The key never hashes an in-memory object. A one-row change in the
CSV gives a new key and the stage runs again; an unchanged CSV with unchanged
params skips it.

A cached result also stores an MD5 fingerprint of the files the stage wrote.
When those files no longer match (`make clean`, or `dvc repro` on another CSV),
`run_cached` runs the stage again instead of trusting the cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prefect import Task, get_run_logger
from prefect.context import TaskRunContext

from fer_pipeline.params import Params
from fer_pipeline.prepare import file_md5

DVC_FILE = "dvc.yaml"
OUTPUT_KINDS = ("outs", "metrics", "plots")
# `${paths.raw_csv}` in dvc.yaml: a params key that DVC interpolates.
INTERPOLATION = re.compile(r"\$\{([\w.]+)\}")


@dataclass(frozen=True)
class StageFiles:
    """Params, inputs and outputs that `dvc.yaml` declares for one stage, with `${...}` resolved from params."""

    stage: str
    params: dict[str, Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def read_stage(stage: str, params: Params, dvc_file: str | Path = DVC_FILE) -> StageFiles:
    """Read a stage's params, inputs and outputs from `dvc.yaml` in the project root."""
    path = Path(dvc_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in {Path.cwd()}; flow `fer` runs from the project root")

    stages = yaml.safe_load(path.read_text(encoding="utf-8"))["stages"]
    if stage not in stages:
        raise ValueError(f"stage {stage!r} is not declared in {path}; stages are {sorted(stages)}")

    flat = params.flat()
    outputs_of = {name: set(_outputs(spec, flat)) for name, spec in stages.items()}
    written_elsewhere = set().union(*(paths for name, paths in outputs_of.items() if name != stage))

    declared_params = [_entry_name(entry) for entry in stages[stage].get("params", [])]
    stage_params = {key: value for key, value in flat.items() if any(_covers(entry, key) for entry in declared_params)}
    inputs = [_interpolate(_entry_name(entry), flat) for entry in stages[stage].get("deps", [])]
    return StageFiles(
        stage=stage,
        params=stage_params,
        inputs=tuple(path for path in inputs if path not in written_elsewhere),
        outputs=tuple(sorted(outputs_of[stage])),
    )


def cache_key(stage: str) -> Callable[[TaskRunContext, dict[str, Any]], str | None]:
    """Return a Prefect `cache_key_fn` for a task whose `params` argument is a `Params`."""

    def compute(context: TaskRunContext, arguments: dict[str, Any]) -> str | None:
        files = read_stage(stage, arguments["params"])
        inputs = {path: _content_md5(Path(path)) for path in files.inputs}
        if any(digest is None for digest in inputs.values()):
            # A missing input: no key, so the stage runs and fails with its own message.
            return None
        payload = json.dumps({"params": files.params, "inputs": inputs}, sort_keys=True, default=str)
        return f"fer-{stage}-{hashlib.sha256(payload.encode()).hexdigest()}"

    return compute


def with_fingerprint(stage: str, params: Params, result: dict[str, Any]) -> dict[str, Any]:
    """Bundle a stage's result with the fingerprint of the outputs it just wrote."""
    return {"result": result, "outputs": fingerprint(read_stage(stage, params).outputs)}


def run_cached(task: Task, params: Params) -> dict[str, Any]:
    """Run a cached stage task; run it again, refreshing the cache, if its outputs changed on disk."""
    stage = task.name
    cached = task(params)

    current = fingerprint(read_stage(stage, params).outputs)
    if current == cached["outputs"]:
        return cached["result"]

    changed = sorted(path for path in current if current[path] != cached["outputs"].get(path))
    get_run_logger().info("stage %s: outputs changed since the cached run (%s); running it again", stage, ", ".join(changed))
    return task.with_options(refresh_cache=True)(params)["result"]


def fingerprint(paths: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """Return the MD5 of each output file: a directory adds each file under it, and None marks a missing path."""
    digests: dict[str, str | None] = {}
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for file in sorted(item for item in path.rglob("*") if item.is_file()):
                digests[file.as_posix()] = file_md5(file)
        else:
            digests[name] = file_md5(path) if path.is_file() else None
    return digests


def _content_md5(path: Path) -> str | None:
    if path.is_dir():
        files = fingerprint([str(path)])
        return hashlib.md5(json.dumps(files, sort_keys=True).encode()).hexdigest()
    if not path.is_file():
        return None
    stat = path.stat()
    return _cached_file_md5(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _cached_file_md5(path: str, size: int, mtime_ns: int) -> str:
    # Keyed on size and modification time as well, so an edited file is hashed
    # again. Validate and prepare in the same run hash the CSV once.
    return file_md5(path)


def _outputs(spec: dict[str, Any], flat: dict[str, Any]) -> list[str]:
    return [_interpolate(_entry_name(entry), flat) for kind in OUTPUT_KINDS for entry in spec.get(kind, [])]


def _entry_name(entry: str | dict[str, Any]) -> str:
    # dvc.yaml writes an entry either as a path or as {path: options}.
    return entry if isinstance(entry, str) else next(iter(entry))


def _covers(entry: str, key: str) -> bool:
    # A params entry names one key (`paths.raw_csv`) or a whole section (`validate`).
    return key == entry or key.startswith(f"{entry}.")


def _interpolate(text: str, flat: dict[str, Any]) -> str:
    # A variable that params.yaml lacks (DVC's `vars`, `foreach` items) stays
    # as written. That path names no file, so it never matches an output, and
    # as an input it turns caching off for the stage.
    return INTERPOLATION.sub(lambda match: str(flat.get(match.group(1), match.group(0))), text)
