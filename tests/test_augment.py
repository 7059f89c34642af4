"""Augmentation changes train batches only, reproducibly, and never reaches val or the saved model."""

import dataclasses
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest

from fer_pipeline.augment import AugmentedBatches, augment_batch
from fer_pipeline.model import build_model, compile_model
from fer_pipeline.params import load_params
from fer_pipeline.prepare import one_hot
from fer_pipeline.train import class_weights, fit_model

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture(scope="module")
def robust():
    return load_params(PARAMS_FILE, ["preset=robust"])


def split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random float images in [0, 1], shape (count, 48, 48, 1), and one-hot labels cycling through the classes."""
    generator = np.random.default_rng(seed)
    images = generator.random((count, 48, 48, 1), dtype=np.float32)
    return images, one_hot(np.arange(count) % 7)


def test_batches_keep_shape_dtype_range_and_labels(robust):
    images, labels = split(40, seed=1)
    batches = AugmentedBatches(images, labels, batch_size=16, augment=robust.augment, seed=3)

    augmented, batch_labels = batches[0]

    rows = batches.order[:16]
    assert augmented.shape == (16, 48, 48, 1)
    assert augmented.dtype == np.float32
    assert augmented.min() >= 0.0
    assert augmented.max() <= 1.0
    np.testing.assert_array_equal(batch_labels, labels[rows])
    assert not np.allclose(augmented, images[rows], atol=0.05)


def test_batches_cover_every_row_once_per_epoch(robust):
    images, labels = split(40, seed=1)
    batches = AugmentedBatches(images, labels, batch_size=16, augment=robust.augment, seed=3)

    assert len(batches) == 3
    rows = np.concatenate([batches.order[index * 16 : (index + 1) * 16] for index in range(len(batches))])
    assert sorted(rows.tolist()) == list(range(40))


def test_batches_deterministic_for_seed(robust):
    images, labels = split(40, seed=1)
    first = AugmentedBatches(images, labels, 16, robust.augment, seed=3)
    second = AugmentedBatches(images, labels, 16, robust.augment, seed=3)
    other_seed = AugmentedBatches(images, labels, 16, robust.augment, seed=4)

    np.testing.assert_array_equal(first[1][0], second[1][0])
    assert not np.array_equal(first[1][0], other_seed[1][0])


def test_batches_change_each_epoch(robust):
    images, labels = split(40, seed=1)
    batches = AugmentedBatches(images, labels, 16, robust.augment, seed=3)
    first_epoch = batches[0][0]

    batches.on_epoch_end()

    assert not np.array_equal(batches[0][0], first_epoch)


def test_input_images_untouched(robust):
    images, labels = split(16, seed=1)
    before = images.copy()

    augment_batch(images, robust.augment, np.random.default_rng(0))
    AugmentedBatches(images, labels, 8, robust.augment, seed=3)[0]

    np.testing.assert_array_equal(images, before)


def test_fit_augments_train_not_val(robust, tmp_path, monkeypatch):
    """`fit_model` hands train to Keras as augmented batches and val as the plain arrays."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = load_params(PARAMS_FILE, ["preset=robust", "train.epochs=1", "train.batch_size=16", "model.filters=[4]", "model.dense_units=8"])
    train_images, train_labels = split(32, seed=1)
    val_images, val_labels = split(16, seed=2)
    val_before = val_images.copy()
    model = compile_model(build_model(params.model), params.train)

    seen = {}
    real_fit = model.fit

    def recording_fit(**kwargs):
        seen.update(kwargs)
        return real_fit(**kwargs)

    monkeypatch.setattr(model, "fit", recording_fit)
    with mlflow.start_run():
        history = fit_model(model, params, (train_images, train_labels), (val_images, val_labels))

    assert isinstance(seen["x"], AugmentedBatches)
    assert seen["x"].images is train_images
    assert seen["validation_data"][0] is val_images
    np.testing.assert_array_equal(val_images, val_before)
    assert len(history["val_accuracy"]) == 1
    # The saved network has no augmentation layer, so inference is deterministic.
    kinds = {type(layer).__name__ for layer in model.layers}
    assert kinds <= {"InputLayer", "Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D", "Dropout", "Flatten", "Dense"}
    np.testing.assert_array_equal(model.predict(val_images, verbose=0), model.predict(val_images, verbose=0))


def test_fit_without_augmentation_uses_arrays(tmp_path, monkeypatch):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = load_params(PARAMS_FILE, ["train.epochs=1", "model.filters=[4]", "model.dense_units=8"])
    train_images, train_labels = split(32, seed=1)
    model = compile_model(build_model(params.model), params.train)

    seen = {}
    real_fit = model.fit

    def recording_fit(**kwargs):
        seen.update(kwargs)
        return real_fit(**kwargs)

    monkeypatch.setattr(model, "fit", recording_fit)
    with mlflow.start_run():
        fit_model(model, params, (train_images, train_labels), split(16, seed=2))

    assert seen["x"] is train_images
    assert seen["class_weight"] is None
    assert not any(isinstance(callback, keras.callbacks.EarlyStopping) for callback in seen["callbacks"])


def test_class_weights_favor_rare_class():
    labels = np.array([0] * 50 + [1] * 5 + [3] * 100 + [2, 4, 5, 6] * 20)

    balanced = class_weights(labels, "balanced")
    softened = class_weights(labels, "balanced_sqrt")

    assert balanced[1] == pytest.approx(labels.size / (7 * 5))
    assert softened[1] == pytest.approx(np.sqrt(balanced[1]))
    assert max(balanced, key=balanced.get) == 1
    assert balanced[3] < 1 < balanced[1]
    assert class_weights(labels, "none") is None


def test_class_weights_missing_class_gets_one():
    weights = class_weights(np.array([0, 0, 3]), "balanced")

    assert weights[1] == 1.0
    assert weights[0] == pytest.approx(3 / 14)


def test_probability_sets_share_of_changed_faces(robust):
    images, _ = split(200, seed=1)
    never = dataclasses.replace(robust.augment, probability=0.0)
    always = dataclasses.replace(robust.augment, probability=1.0)

    unchanged = augment_batch(images, never, np.random.default_rng(0))
    changed = augment_batch(images, always, np.random.default_rng(0))
    half = augment_batch(images, robust.augment, np.random.default_rng(0))

    np.testing.assert_array_equal(unchanged, images)
    assert all(not np.array_equal(changed[index], images[index]) for index in range(200))
    share = np.mean([not np.array_equal(half[index], images[index]) for index in range(200)])
    assert robust.augment.probability == 0.5
    assert 0.4 < share < 0.6
