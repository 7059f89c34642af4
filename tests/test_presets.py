"""Presets resolve to the expected params, explicit values win, and the large network trains on a CPU."""

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from fer_pipeline.cli import main
from fer_pipeline.model import build_model, compile_model
from fer_pipeline.params import load_params
from fer_pipeline.prepare import one_hot

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"


def write_params(tmp_path: Path, change) -> Path:
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    change(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_default_preset_is_paper():
    params = load_params(PARAMS_FILE)

    assert params.preset == "paper"


def test_paper_reference_matches_sections():
    """`presets.paper` lists the section defaults, so `preset: paper` changes nothing."""
    raw = yaml.safe_load(PARAMS_FILE.read_text())

    for section, values in raw["presets"]["paper"].items():
        for key, value in values.items():
            assert raw[section][key] == value, f"presets.paper.{section}.{key}"


def test_paper_is_reference_recipe():
    params = load_params(PARAMS_FILE, ["preset=paper"])

    assert params.model.filters == (32, 64, 128)
    assert params.model.convs_per_block == 1
    assert params.model.dense_units == 132
    assert params.model.block_dropout == 0.0
    assert params.model.dense_dropout == 0.0
    assert params.train.epochs == 20
    assert params.train.batch_size == 64
    assert params.train.learning_rate == pytest.approx(1e-3)
    assert params.train.early_stopping_patience == 0
    assert params.train.reduce_lr_patience == 0
    assert params.train.class_weight == "none"
    assert params.augment.enabled is False
    assert params.evaluate.tta_flip is False


def test_robust_keeps_network_adds_recipe():
    paper = load_params(PARAMS_FILE, ["preset=paper"])
    robust = load_params(PARAMS_FILE, ["preset=robust"])

    assert robust.model == paper.model
    assert robust.train.learning_rate == paper.train.learning_rate
    assert robust.train.batch_size == paper.train.batch_size
    assert robust.train.epochs == 30
    assert robust.train.early_stopping_patience == 4
    assert robust.train.reduce_lr_patience == 2
    assert robust.train.class_weight == "balanced_sqrt"
    assert robust.augment.enabled is True
    assert robust.evaluate.tta_flip is True


def test_large_is_deeper_network():
    large = load_params(PARAMS_FILE, ["preset=large"])

    assert large.model.filters == (64, 128, 256, 512)
    assert large.model.convs_per_block == 2
    assert large.model.block_dropout > 0
    assert large.model.dense_dropout > 0
    assert large.train.epochs > 30
    assert large.augment.enabled is True


def test_explicit_override_beats_preset():
    params = load_params(PARAMS_FILE, ["preset=robust", "train.epochs=3", "train.class_weight=balanced"])

    assert params.train.epochs == 3
    assert params.train.class_weight == "balanced"
    assert params.train.early_stopping_patience == 4


def test_override_to_paper_value_takes_preset():
    """A value equal to the `paper` default counts as not set; the presets table turns a preset value off."""
    params = load_params(PARAMS_FILE, ["preset=robust", "augment.enabled=false"])
    ablated = load_params(PARAMS_FILE, ["preset=robust", "presets.robust.augment.enabled=false"])

    assert params.augment.enabled is True
    assert ablated.augment.enabled is False
    assert ablated.train.early_stopping_patience == 4


def test_override_order_does_not_matter():
    params = load_params(PARAMS_FILE, ["train.epochs=3", "preset=robust"])

    assert params.train.epochs == 3


def test_value_edited_in_file_beats_preset(tmp_path):
    """What `dvc exp run -S preset=robust -S train.epochs=5` writes into params.yaml."""

    def edit(raw):
        raw["preset"] = "robust"
        raw["train"]["epochs"] = 5

    params = load_params(write_params(tmp_path, edit))

    assert params.preset == "robust"
    assert params.train.epochs == 5
    assert params.augment.enabled is True


def test_preset_value_set_in_presets_table():
    params = load_params(PARAMS_FILE, ["preset=robust", "presets.robust.train.early_stopping_patience=6"])

    assert params.train.early_stopping_patience == 6


def test_presets_log_same_param_keys():
    """Runs of any two presets line up key by key in MLflow's compare view."""
    keys = {name: set(load_params(PARAMS_FILE, [f"preset={name}"]).flat()) for name in ("paper", "robust", "large")}

    assert keys["paper"] == keys["robust"] == keys["large"]
    assert load_params(PARAMS_FILE, ["preset=large"]).flat()["preset"] == "large"


def test_unknown_preset_rejected():
    with pytest.raises(ValueError, match="unknown preset 'robst'; presets in params.yaml: paper, robust, large"):
        load_params(PARAMS_FILE, ["preset=robst"])


def test_preset_without_reference_value_rejected(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["presets"]["robust"]["train"].update(seed=7))

    with pytest.raises(ValueError, match=r"presets\.robust sets train\.seed but presets\.paper has no value for it"):
        load_params(path)


def test_preset_unknown_param_rejected(tmp_path):
    def edit(raw):
        raw["presets"]["paper"]["train"]["warmup"] = 0
        raw["presets"]["robust"]["train"]["warmup"] = 2
        raw["preset"] = "robust"

    with pytest.raises(ValueError, match=r"presets\.robust sets train\.warmup, which is not a param"):
        load_params(write_params(tmp_path, edit))


def test_cli_set_preset_reaches_params(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(PARAMS_FILE.read_text())

    code = main(["--set", "preset=robst", "train"])

    assert code == 2
    assert "unknown preset 'robst'" in capsys.readouterr().err


def test_large_network_trains_one_epoch_on_cpu():
    params = load_params(PARAMS_FILE, ["preset=large"])
    model = compile_model(build_model(params.model), params.train)
    generator = np.random.default_rng(0)
    images = generator.random((32, 48, 48, 1), dtype=np.float32)
    labels = one_hot(np.arange(32) % 7)

    history = model.fit(images, labels, batch_size=16, epochs=1, verbose=0).history

    conv_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(conv_layers) == 8
    assert model.get_layer("block4_pool").output.shape == (None, 3, 3, 512)
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in model.layers) == 5
    assert np.isfinite(history["loss"][0])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("augment.gamma=[0, 2]", "augment.gamma low end must be positive"),
        ("augment.brightness=[1.2, 0.3]", "augment.brightness must be [low, high]"),
        ("train.class_weight=heavy", "train.class_weight must be one of"),
        ("train.early_stopping_patience=-1", "train.early_stopping_patience must be 0 or more"),
        ("model.block_dropout=1.0", "model.block_dropout must be 0 or more and below 1"),
        ("robustness.low_light.low_light_1.gamma=-1", "robustness.low_light.low_light_1: param gamma must be positive"),
        ("robustness.low_resolution.low_res_24.size=20", "robustness.low_resolution.low_res_24: param size must divide 48"),
        ("robustness.occlusion.glasses_dark.shape=visor", "robustness.occlusion.glasses_dark: param shape must be one of"),
        ("robustness.split=holdout", "robustness.split must be one of"),
    ],
)
def test_new_params_rejected(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_params(PARAMS_FILE, [override])


def test_condition_name_rejected(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["robustness"]["rotation"].update({"Rotate 45": {"degrees": 45}}))

    with pytest.raises(ValueError, match="robustness.rotation has invalid condition name 'Rotate 45'"):
        load_params(path)


def test_duplicate_condition_rejected(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["robustness"]["perspective"].update({"rotate_cw_15": {"degrees": 15}}))

    with pytest.raises(ValueError, match="robustness condition 'rotate_cw_15' is defined twice"):
        load_params(path)
