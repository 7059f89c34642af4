"""`mlflow run . --env-manager local -P epochs=1` on the shipped sample, and MLproject/params.yaml agreement."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import PROJECT_ROOT, make_project, run

# MLproject parameter -> params.yaml key it overrides (the preset is a top-level key).
PARAMETER_KEYS = {
    "preset": ("preset",),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "learning_rate": ("train", "learning_rate"),
    "seed": ("train", "seed"),
    "dense_units": ("model", "dense_units"),
}


def test_mlproject_defaults_match_params():
    entry_points = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"]
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())

    assert set(entry_points) == {"main", "validate", "prepare", "train", "evaluate", "register"}
    for entry in ("main", "train"):
        for name, spec in entry_points[entry]["parameters"].items():
            path = PARAMETER_KEYS[name]
            default = params[path[0]] if len(path) == 1 else params[path[0]][path[1]]
            assert spec["default"] == default, f"{entry}.{name}"
            assert f"--set {'.'.join(path)}={{{name}}}" in entry_points[entry]["command"]


@pytest.mark.slow
def test_mlflow_run_main_one_epoch(tmp_path):
    root = make_project(tmp_path / "project", epochs=20)
    run(["fer", "data", "use-sample"], root)

    result = run(["mlflow", "run", ".", "--env-manager", "local", "-P", "epochs=1"], root)

    run_id = json.loads((root / "models" / "run.json").read_text())["run_id"]
    assert run_id in result.stdout + result.stderr
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    client = MlflowClient()
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.params["train.epochs"] == "1"
    assert [point.step for point in client.get_metric_history(run_id, "val_accuracy")] == [1]
    assert "test/accuracy" in logged.data.metrics
    assert client.get_model_version_by_alias("fer-emotion-cnn", "champion").run_id == run_id
    # Artifacts stay inside the project whichever experiment `mlflow run` picked.
    artifact_dir = Path(logged.info.artifact_uri.removeprefix("file://"))
    assert artifact_dir.is_relative_to(root.resolve())
    assert any((artifact_dir / "plots").iterdir())
