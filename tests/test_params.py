from pathlib import Path

import pytest
import yaml

from fer_pipeline.params import load_params

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"


def write_params(tmp_path: Path, change) -> Path:
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    change(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_defaults_match_reference_model():
    params = load_params(PARAMS_FILE)

    assert params.model.filters == (32, 64, 128)
    assert params.model.kernel_size == 3
    assert params.model.dense_units == 132
    assert params.train.epochs == 20
    assert params.train.batch_size == 64
    assert params.train.learning_rate == pytest.approx(1e-3)
    assert params.mlflow.registered_model == "fer-emotion-cnn"


def leaf_keys(values, prefix: str = "") -> set[str]:
    """Dotted keys of every non-mapping value in nested mappings."""
    if not isinstance(values, dict):
        return {prefix}
    return {key for name, item in values.items() for key in leaf_keys(item, f"{prefix}.{name}" if prefix else name)}


def test_flat_keys_cover_every_param():
    flat = load_params(PARAMS_FILE).flat()
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    # The presets table is not logged: its values land in the sections it names.
    raw.pop("presets")

    assert set(flat) == leaf_keys(raw)
    assert flat["model.filters"] == [32, 64, 128]
    assert flat["preset"] == "paper"


def test_override_sets_value():
    params = load_params(PARAMS_FILE, ["train.epochs=3", "train.learning_rate=0.0005"])

    assert params.train.epochs == 3
    assert params.train.learning_rate == pytest.approx(5e-4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", "train.epochs must be positive"),
        ("train.learning_rate=-0.1", "train.learning_rate must be positive"),
        ("train.epochs=three", "train.epochs must be int"),
        ("train.epochs=1.5", "train.epochs must be int"),
        ("train.epoch=3", "no param 'train.epoch'"),
        ("epochs=3", "expected section.key=value"),
        ("evaluate.splits=[train, holdout]", "evaluate.splits contains ['holdout']"),
    ],
)
def test_override_rejected(override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_params(PARAMS_FILE, [override])


def test_unknown_key_in_file_rejected(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["train"].update(epoch=3))

    with pytest.raises(ValueError, match=r"unknown param train\.epoch"):
        load_params(path)


def test_missing_key_in_file_rejected(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["train"].pop("seed"))

    with pytest.raises(ValueError, match=r"missing param train\.seed"):
        load_params(path)


def test_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="params file not found"):
        load_params(tmp_path / "params.yaml")
