"""`dvc repro` end to end on the shipped sample, in a throw-away copy of the project.

Trains for real (2 epochs on about 1,400 images) and checks what DVC, the
reports and the MLflow store hold afterwards.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import make_project, run
from fer_pipeline.labels import EMOTIONS
from fer_pipeline.prepare import file_md5

pytestmark = pytest.mark.slow

EPOCHS = 2


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy on which `fer data use-sample` and `dvc repro` have run once."""
    root = make_project(tmp_path_factory.mktemp("project"), epochs=EPOCHS)
    run(["fer", "data", "use-sample"], root)
    result = run(["dvc", "repro"], root)
    (root / "repro.log").write_text(result.stdout + result.stderr)
    return root


@pytest.fixture(scope="module")
def client(project) -> MlflowClient:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return MlflowClient()


@pytest.fixture(scope="module")
def run_id(project) -> str:
    return json.loads((project / "models" / "run.json").read_text())["run_id"]


def test_metrics_file_has_every_split(project):
    metrics = json.loads((project / "reports" / "metrics.json").read_text())

    assert set(metrics) == {"train", "val", "test"}
    for split in metrics.values():
        assert 0.0 <= split["accuracy"] <= 1.0
        assert 0.0 <= split["macro_f1"] <= 1.0
        assert split["loss"] > 0
        assert set(split["per_class"]) == set(EMOTIONS)
    assert metrics["train"]["rows"] > metrics["val"]["rows"] > 0


def test_reports_and_plots_written(project):
    reports = project / "reports"
    for name in ["validation.json", "validation.html", "data_docs/index.html", "prepare.json", "learning_curve.csv", "learning_curve.png", "confusion_matrices.json", "test_predictions.csv", "registry.json"]:
        assert (reports / name).is_file(), name
    for split in ("train", "val", "test"):
        assert (reports / f"confusion_matrix_{split}.png").read_bytes().startswith(b"\x89PNG")

    curve = (reports / "learning_curve.csv").read_text().splitlines()
    assert curve[0] == "epoch,loss,accuracy,val_loss,val_accuracy"
    assert len(curve) == EPOCHS + 1

    matrices = json.loads((reports / "confusion_matrices.json").read_text())
    assert len(matrices["test"]["counts"]) == 7
    rows_sum = [round(sum(row), 3) for row in matrices["test"]["normalized"]]
    assert all(value == 1.0 for value in rows_sum)


def test_dvc_tracks_raw_csv_and_outputs(project):
    tracked = yaml.safe_load((project / "data" / "raw" / "fer2013.csv.dvc").read_text())
    assert tracked["outs"][0]["md5"] == file_md5(project / "data" / "raw" / "fer2013.csv")

    status = run(["dvc", "status"], project)
    assert "up to date" in status.stdout

    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"validate", "prepare", "train", "evaluate", "register"}


def test_mlflow_run_params_and_history(client, run_id):
    run_data = client.get_run(run_id).data

    assert run_data.params["train.epochs"] == str(EPOCHS)
    assert run_data.params["model.filters"] == "[32, 64, 128]"
    assert run_data.params["train.learning_rate"] == "0.001"
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(run_id, name)
        assert [point.step for point in history] == list(range(1, EPOCHS + 1)), name
    for name in ("train/accuracy", "val/accuracy", "test/accuracy", "test/macro_f1", "test/per_class/disgust/recall"):
        assert name in run_data.metrics
    assert run_data.metrics["prepare/dropped_total_rows"] == 0


def test_mlflow_run_has_validation_reports(client, run_id):
    logged = {artifact.path for artifact in client.list_artifacts(run_id, "data")}

    assert {"data/validation.json", "data/validation.html", "data/prepare.json", "data/data_docs"} <= logged
    docs = {artifact.path for artifact in client.list_artifacts(run_id, "data/data_docs")}
    assert "data/data_docs/index.html" in docs


def test_mlflow_run_tags_and_dataset(client, run_id, project):
    run = client.get_run(run_id)
    tags = run.data.tags
    raw_md5 = file_md5(project / "data" / "raw" / "fer2013.csv")

    assert tags["dvc.raw_csv_md5"] == raw_md5
    assert tags["device"].startswith(("CPU", "GPU"))
    assert tags["tensorflow_version"]
    assert tags["keras_version"].startswith("3.")
    assert len(tags["mlflow.source.git.commit"]) == 40
    dataset_inputs = run.inputs.dataset_inputs
    assert len(dataset_inputs) == 1
    assert dataset_inputs[0].dataset.digest == raw_md5[:20]
    assert dataset_inputs[0].dataset.name == "fer2013.csv"


def test_mlflow_artifacts_logged(client, run_id, project):
    paths = {item.path for folder in ("plots", "evaluation") for item in client.list_artifacts(run_id, folder)}

    # With the default local store, artifacts live in the project's mlartifacts/.
    assert client.get_run(run_id).info.artifact_uri.startswith((project / "mlartifacts").resolve().as_uri())

    assert "plots/learning_curve.png" in paths
    assert "plots/confusion_matrix_test.png" in paths
    assert "evaluation/metrics.json" in paths


def test_registered_model_has_champion(client, project):
    registry = json.loads((project / "reports" / "registry.json").read_text())

    champion = client.get_model_version_by_alias("fer-emotion-cnn", "champion")
    assert int(champion.version) == registry["champion_version"]
    model = mlflow.pyfunc.load_model("models:/fer-emotion-cnn@champion")
    assert model.metadata.flavors.get("keras") is not None


def test_csv_change_reruns_from_validate(project):
    csv_path = project / "data" / "raw" / "fer2013.csv"
    original = csv_path.read_bytes()
    csv_path.write_bytes(original.replace(b",Training\n", b",PrivateTest\n", 1))
    try:
        dry_run = run(["dvc", "repro", "--dry"], project).stdout
    finally:
        csv_path.write_bytes(original)

    # A dry run stops where outputs would change; train onward follow from prepare's new output.
    assert "Running stage 'validate'" in dry_run
    assert "Running stage 'prepare'" in dry_run


def test_epochs_change_reruns_train_onward(project, client):
    params = project / "params.yaml"
    first = json.loads((project / "reports" / "registry.json").read_text())
    params.write_text(params.read_text().replace(f"epochs: {EPOCHS}", "epochs: 1"))

    output = run(["dvc", "repro"], project).stdout

    assert "Stage 'validate' didn't change, skipping" in output
    assert "Stage 'prepare' didn't change, skipping" in output
    for stage in ("train", "evaluate", "register"):
        assert f"Running stage '{stage}'" in output
    second = json.loads((project / "reports" / "registry.json").read_text())
    assert second["version"] == first["version"] + 1
    # The alias moves only to a version with a better val accuracy.
    expected_champion = second["version"] if second["val_accuracy"] > first["val_accuracy"] else first["champion_version"]
    assert second["champion_version"] == expected_champion
    assert int(client.get_model_version_by_alias("fer-emotion-cnn", "champion").version) == expected_champion


def test_every_param_read_is_declared(project):
    """Each `params.section[.key]` a stage's code reads is declared for that stage in dvc.yaml."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    sections = set(yaml.safe_load((project / "params.yaml").read_text()))

    for stage, spec in stages.items():
        declared = {str(item) for item in spec["params"]}
        source = "".join((project / dep).read_text() for dep in spec["deps"] if str(dep).endswith(".py"))
        reads = set(re.findall(r"\bparams\.(\w+)(?:\.(\w+))?", source))
        reads = {(section, key) for section, key in reads if section in sections}
        assert reads, f"found no params read by stage {stage}"
        for section, key in reads:
            assert section in declared or (key and f"{section}.{key}" in declared), (
                f"stage {stage} reads params.{section}{'.' + key if key else ''} but dvc.yaml does not declare it"
            )


def test_dvc_push_pull_round_trip(project, tmp_path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--local", "-f", "-d", "roundtrip", str(remote)], project)
    try:
        run(["dvc", "push", "data/raw/fer2013.csv.dvc"], project)
        csv_path = project / "data" / "raw" / "fer2013.csv"
        expected = file_md5(csv_path)

        csv_path.unlink()
        shutil.rmtree(project / ".dvc" / "cache")
        run(["dvc", "pull", "data/raw/fer2013.csv.dvc"], project)

        assert file_md5(csv_path) == expected
        assert any(remote.rglob("*"))
    finally:
        run(["dvc", "remote", "remove", "--local", "roundtrip"], project)


def test_bad_raw_csv_stops_pipeline(tmp_path):
    root = make_project(tmp_path / "bad", epochs=1)
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "fer2013.csv").write_text("emotion,pixels,Usage\n7,1 2 3,Training\n")
    before = (raw / "fer2013.csv").read_bytes()
    run(["dvc", "add", "data/raw/fer2013.csv"], root)

    result = run(["dvc", "repro"], root, check=False)

    assert result.returncode != 0
    assert "emotion is an integer 0-6: 1 row(s) fail, first on lines 2" in result.stderr + result.stdout
    assert not (root / "data" / "prepared").exists()
    assert not (root / "reports" / "validation.json").exists()
    assert (raw / "fer2013.csv").read_bytes() == before
