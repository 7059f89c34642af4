import keras
import pytest

from fer_pipeline.model import build_model, compile_model
from fer_pipeline.params import ModelParams, TrainParams

REFERENCE = ModelParams(filters=(32, 64, 128), kernel_size=3, dense_units=132, convs_per_block=1, block_dropout=0.0, dense_dropout=0.0)


def reference_parameter_count() -> int:
    """Trainable and BatchNorm parameters of the reference CNN, from its layer shapes."""
    conv = (3 * 3 * 1 + 1) * 32 + (3 * 3 * 32 + 1) * 64 + (3 * 3 * 64 + 1) * 128
    # BatchNorm keeps gamma, beta, moving mean and moving variance per channel.
    batchnorm = 4 * (32 + 64 + 128)
    dense = (6 * 6 * 128 + 1) * 132 + (132 + 1) * 7
    return conv + batchnorm + dense


def test_reference_layers_in_order():
    model = build_model(REFERENCE)

    kinds = [type(layer).__name__ for layer in model.layers]

    block = ["Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D"]
    assert kinds == ["InputLayer", *block, *block, *block, "Flatten", "Dense", "Dense"]


def test_reference_shapes_and_parameter_count():
    model = build_model(REFERENCE)

    assert model.input_shape == (None, 48, 48, 1)
    assert model.get_layer("block3_pool").output.shape == (None, 6, 6, 128)
    assert model.output_shape == (None, 7)
    assert model.count_params() == reference_parameter_count()
    assert all(layer.padding == "same" for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert model.get_layer("emotion").activation.__name__ == "softmax"


def test_compile_uses_adam_and_categorical_crossentropy():
    model = build_model(ModelParams(filters=(8,), kernel_size=3, dense_units=4, convs_per_block=1, block_dropout=0.0, dense_dropout=0.0))

    compile_model(
        model,
        TrainParams(
            epochs=1, batch_size=8, learning_rate=0.002, seed=1,
            early_stopping_patience=0, reduce_lr_patience=0, class_weight="none",
        ),
    )

    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.002)
    assert model.loss == "categorical_crossentropy"
