"""Each stage run out of order fails with a message that names the missing input and the fix."""

import json
from pathlib import Path

import pytest

from fer_pipeline.cli import main
from fer_pipeline.files import atomic_directory, remove_on_failure

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture
def empty_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "params.yaml").write_text(PARAMS_FILE.read_text())
    return tmp_path


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ("validate", "raw CSV not found: data/raw/fer2013.csv; run `fer data use-sample`"),
        ("prepare", "raw CSV not found: data/raw/fer2013.csv"),
        ("train", "data/prepared/summary.json not found; run `fer prepare`"),
        ("evaluate", "models/run.json not found; run the train stage first"),
        ("register", "models/run.json not found; run the train stage first"),
    ],
)
def test_stage_without_input_fails(empty_project, capsys, stage, message):
    code = main([stage])

    output = capsys.readouterr().err
    assert code != 0
    assert message in output
    assert "Traceback" not in output
    assert not (empty_project / "reports").exists() or not any((empty_project / "reports").iterdir())


def test_prepare_rejects_bad_pixels(empty_project, capsys, sample_lines):
    raw = empty_project / "data" / "raw"
    raw.mkdir(parents=True)
    bad = sample_lines[2].replace(",", ",300 ", 1)
    (raw / "fer2013.csv").write_text("\n".join([sample_lines[0], sample_lines[1], bad]) + "\n")

    code = main(["prepare"])

    assert code == 2
    assert "first on lines [3]" in capsys.readouterr().err
    assert not (empty_project / "data" / "prepared").exists()


def test_unknown_override_fails_before_stage(empty_project, capsys):
    code = main(["--set", "train.epoch=3", "train"])

    assert code == 2
    assert "no param 'train.epoch'" in capsys.readouterr().err


def test_atomic_directory_keeps_nothing_on_failure(tmp_path):
    target = tmp_path / "prepared"

    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "train.npz").write_bytes(b"partial")
            raise RuntimeError("parse failed")

    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_remove_on_failure_deletes_outputs(tmp_path):
    written = tmp_path / "model.keras"

    with pytest.raises(RuntimeError):
        with remove_on_failure([written, tmp_path / "never-written.json"]):
            written.write_bytes(b"half a model")
            raise RuntimeError("training diverged")

    assert not written.exists()


def test_prepare_drop_policies(empty_project, sample_lines):
    raw = empty_project / "data" / "raw"
    raw.mkdir(parents=True)
    header, rows = sample_lines[0], sample_lines[1:40]
    blank = ",".join([rows[0].split(",")[0], " ".join(["128"] * 2304), "Training"])
    leaked_to_test = ",".join([rows[1].split(",")[0], rows[1].split(",")[1], "PublicTest"])
    relabelled = ",".join([str((int(rows[2].split(",")[0]) + 1) % 7), rows[2].split(",")[1], rows[2].split(",")[2]])
    (raw / "fer2013.csv").write_text("\n".join([header, *rows, blank, leaked_to_test, relabelled]) + "\n")

    assert main(["prepare"]) == 0
    kept_all = json.loads((empty_project / "reports" / "prepare.json").read_text())
    assert kept_all["dropped"]["total_rows"] == 0

    overrides = ["--set", "prepare.drop_blank_images=true", "--set", "prepare.drop_cross_split_duplicates=true", "--set", "prepare.drop_conflicting_labels=true"]
    assert main([*overrides, "prepare"]) == 0

    dropped = json.loads((empty_project / "reports" / "prepare.json").read_text())["dropped"]
    assert dropped == {"blank_images": 1, "cross_split_duplicates": 1, "conflicting_labels": 2, "total_rows": 4}
    summary = json.loads((empty_project / "data" / "prepared" / "summary.json").read_text())
    assert sum(split["rows"] for split in summary["splits"].values()) == len(rows) + 3 - 4
    assert summary["splits"]["test"]["rows"] == kept_all["rows"]["test"]


def test_drop_policy_needs_boolean(empty_project, capsys):
    assert main(["--set", "prepare.drop_blank_images=yes please", "prepare"]) == 2
    assert "prepare.drop_blank_images must be true or false" in capsys.readouterr().err
