"""`dvc exp run -S preset=robust` on the shipped sample: the preset reaches training, robustness and the report.

Runs every stage once (1 epoch, about 1,400 images) in a throw-away project.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import make_project, run

pytestmark = pytest.mark.slow

CONDITIONS = [
    "low_light_1", "low_light_2", "glasses_dark", "glasses_lens", "rotate_ccw_15",
    "rotate_cw_15", "rotate_ccw_30", "rotate_cw_30", "yaw_30", "low_res_24",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A committed project copy on which `dvc exp run -S preset=robust -S train.epochs=1` has run."""
    # Keep params.yaml at 20 epochs: the 1 epoch set below must differ from the
    # `paper` default to count as explicit and win over the preset's 30.
    root = make_project(tmp_path_factory.mktemp("robust"), epochs=20)
    run(["fer", "data", "use-sample"], root)
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.email=test@example.com", "-c", "user.name=test", "commit", "-q", "-m", "sample"], root)

    result = run(["dvc", "exp", "run", "-S", "preset=robust", "-S", "train.epochs=1"], root)
    (root / "exp.log").write_text(result.stdout + result.stderr)
    return root


@pytest.fixture(scope="module")
def logged_run(project):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    run_id = json.loads((project / "models" / "run.json").read_text())["run_id"]
    return MlflowClient().get_run(run_id)


def test_experiment_params_applied(project):
    params = yaml.safe_load((project / "params.yaml").read_text())

    assert params["preset"] == "robust"
    assert params["train"]["epochs"] == 1


def test_preset_reaches_training_run(logged_run):
    logged = logged_run.data.params

    assert logged["preset"] == "robust"
    assert logged["train.epochs"] == "1"
    assert logged["augment.enabled"] == "True"
    assert logged["train.early_stopping_patience"] == "4"
    assert logged["train.class_weight"] == "balanced_sqrt"
    assert logged["evaluate.tta_flip"] == "True"
    assert logged["model.filters"] == "[32, 64, 128]"


def test_robustness_in_dvc_metrics(project):
    test = json.loads((project / "reports" / "metrics.json").read_text())["test"]

    assert list(test["robust"]) == CONDITIONS
    for name, scores in test["robust"].items():
        assert 0.0 <= scores["accuracy"] <= 1.0, name
        assert scores["accuracy_drop"] == pytest.approx(test["accuracy"] - scores["accuracy"]), name
        assert scores["macro_f1_drop"] == pytest.approx(test["macro_f1"] - scores["macro_f1"]), name

    rows = (project / "reports" / "robustness.csv").read_text().splitlines()
    assert rows[0] == "condition,accuracy,macro_f1"
    assert [row.split(",")[0] for row in rows[1:]] == ["clean", *CONDITIONS]


def test_robustness_in_mlflow(logged_run):
    metrics = logged_run.data.metrics

    for name in CONDITIONS:
        for metric in ("accuracy", "macro_f1", "accuracy_drop", "macro_f1_drop"):
            assert f"test/robust/{name}/{metric}" in metrics, f"test/robust/{name}/{metric}"
    assert metrics["epochs_trained"] == 1


def test_report_logged_and_self_contained(project, logged_run):
    page = (project / "reports" / "report.html").read_text(encoding="utf-8")

    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]*)""", page, flags=re.IGNORECASE)
    assert links
    assert not [link for link in links if not link.startswith("data:image/png;base64,")]
    assert "<h2>Data validation</h2>" in page
    assert "rows_per_split" in page
    artifacts = {item.path for folder in ("report", "plots") for item in MlflowClient().list_artifacts(logged_run.info.run_id, folder)}
    assert "report/report.html" in artifacts
    assert "plots/robustness.png" in artifacts
    assert "plots/robustness_examples.png" in artifacts
