"""MLflow set-up shared by the stages: tracking URI, experiment, and the run handed between stages.

The stages run as separate processes, so `train` writes the run id to
`models/run.json` and `evaluate` and `register` reopen that run from it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import mlflow

from fer_pipeline.files import write_json_atomic

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "mlflow.db"
DEFAULT_ARTIFACT_DIR = "mlartifacts"
RUN_FILE = "run.json"


def tracking_uri(root: str | Path = ".") -> str:
    """Return `MLFLOW_TRACKING_URI` when set, else a SQLite store in the project root."""
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return f"sqlite:///{(Path(root) / DEFAULT_DATABASE).resolve()}"


def configure(experiment_name: str, root: str | Path = ".") -> str:
    """Point MLflow at the tracking store and make sure the experiment exists; return its id."""
    uri = tracking_uri(root)
    # Read before set_tracking_uri, which exports MLFLOW_TRACKING_URI itself.
    local_store = "MLFLOW_TRACKING_URI" not in os.environ
    mlflow.set_tracking_uri(uri)

    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id

    # With the default local store, artifacts go under the project too. A
    # tracking server chooses its own artifact store.
    artifact_location = None
    if local_store:
        artifact_location = (Path(root) / DEFAULT_ARTIFACT_DIR).resolve().as_uri()
    experiment_id = mlflow.create_experiment(experiment_name, artifact_location=artifact_location)
    log.info("created MLflow experiment %r (id %s) in %s", experiment_name, experiment_id, uri)
    return experiment_id


def write_run_file(model_dir: str | Path, run: Any, model_uri: str) -> Path:
    """Record the run and logged model for the stages that follow `train`."""
    path = Path(model_dir) / RUN_FILE
    write_json_atomic(
        path,
        {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "tracking_uri": mlflow.get_tracking_uri(),
            "model_uri": model_uri,
        },
    )
    return path


def read_run_file(model_dir: str | Path) -> dict[str, str]:
    """Read `models/run.json`, written by the `train` stage."""
    path = Path(model_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run the train stage first (`fer train` or `dvc repro train`)")
    return json.loads(path.read_text(encoding="utf-8"))


def git_commit(root: str | Path = ".") -> str | None:
    """Return the checked-out git commit, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def flatten(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    """Flatten nested numeric dicts into `prefix/key/subkey` metric names."""
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            flat.update(flatten(name, value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat
