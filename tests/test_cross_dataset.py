"""`fer evaluate --csv` scores a model on any FER-format CSV and logs the result under the given name."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import SAMPLE_CSV
from fer_pipeline import raw_data, tracking
from fer_pipeline.cli import main
from fer_pipeline.metrics import split_metrics
from fer_pipeline.model import build_model, compile_model
from fer_pipeline.params import load_params

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory):
    """A project with an (untrained) small model in models/, its MLflow run, and a registered champion."""
    root = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        (root / "params.yaml").write_text(PARAMS_FILE.read_text())
        params = load_params("params.yaml", ["model.filters=[4]", "model.dense_units=8"])

        experiment_id = tracking.configure(params.mlflow.experiment, root)
        model = compile_model(build_model(params.model), params.train)
        Path("models").mkdir()
        model.save("models/model.keras")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            # Explicit (empty) requirements skip MLflow's slow dependency inference.
            info = mlflow.keras.log_model(model, name="model", pip_requirements=[])
        tracking.write_run_file("models", run, info.model_uri)
        version = mlflow.register_model(info.model_uri, params.mlflow.registered_model)
        MlflowClient().set_registered_model_alias(params.mlflow.registered_model, params.mlflow.champion_alias, version.version)

        yield {"run_id": run.info.run_id, "model": model, "root": root}


def expected_accuracy(model) -> float:
    frame = raw_data.read_raw_csv(SAMPLE_CSV)
    images = raw_data.parse_pixels(frame["pixels"]).astype(np.float32) / 255.0
    labels = frame["emotion"].astype(int).to_numpy()
    return split_metrics(labels, model.predict(images, verbose=0))["accuracy"]


def test_evaluate_csv_logs_under_name(trained_project, capsys):
    code = main(["evaluate", "--csv", str(SAMPLE_CSV), "--name", "sample_check"])

    assert code == 0
    assert "logged as sample_check/*" in capsys.readouterr().out
    report = json.loads((trained_project["root"] / "reports" / "evaluations" / "sample_check.json").read_text())
    assert report["metrics"]["rows"] == 2005
    assert report["run_id"] == trained_project["run_id"]
    assert report["metrics"]["accuracy"] == pytest.approx(expected_accuracy(trained_project["model"]), abs=1e-6)

    client = MlflowClient()
    logged = client.get_run(trained_project["run_id"]).data
    assert logged.metrics["sample_check/accuracy"] == pytest.approx(report["metrics"]["accuracy"])
    assert "sample_check/macro_f1" in logged.metrics
    assert "sample_check/per_class/disgust/recall" in logged.metrics
    assert logged.tags["evaluation.sample_check.csv"] == str(SAMPLE_CSV)
    artifacts = [item.path for item in client.list_artifacts(trained_project["run_id"], "evaluations")]
    assert artifacts == ["evaluations/sample_check.json"]


def test_evaluate_csv_registered_model(trained_project, tmp_path, capsys):
    output = tmp_path / "champion.json"

    code = main(["evaluate", "--csv", str(SAMPLE_CSV), "--name", "champion_check", "--model", "models:/fer-emotion-cnn@champion", "--output", str(output)])

    assert code == 0
    report = json.loads(output.read_text())
    assert report["model"] == "models:/fer-emotion-cnn@champion (version 1)"
    assert "champion_check/accuracy" in MlflowClient().get_run(trained_project["run_id"]).data.metrics


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--name", "val"], "it would overwrite the val split's metrics"),
        (["--name", "bad name"], "invalid evaluation name 'bad name'"),
        ([], "--csv needs --name NAME"),
        (["--name", "x", "--model", "runs:/abc/model"], "invalid model 'runs:/abc/model'"),
        (["--name", "x", "--model", "7"], "has no version 7"),
    ],
)
def test_evaluate_csv_rejects_bad_arguments(trained_project, capsys, arguments, message):
    code = main(["evaluate", "--csv", str(SAMPLE_CSV), *arguments])

    assert code == 2
    assert message in capsys.readouterr().err


def test_evaluate_csv_rejects_invalid_csv(trained_project, write_csv, sample_lines, capsys):
    bad = write_csv([sample_lines[0], sample_lines[1], "9" + sample_lines[2][1:]])

    code = main(["evaluate", "--csv", str(bad), "--name", "broken"])

    assert code == 1
    assert "emotion is an integer 0-6" in capsys.readouterr().err
    assert not (trained_project["root"] / "reports" / "evaluations" / "broken.json").exists()


def test_evaluate_options_need_csv(trained_project, capsys):
    code = main(["evaluate", "--name", "orphan"])

    assert code == 2
    assert "apply only with --csv" in capsys.readouterr().err
