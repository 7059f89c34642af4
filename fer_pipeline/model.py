"""The reference CNN for 48x48 grayscale faces, built with the Keras Functional API."""

from __future__ import annotations

import keras

from fer_pipeline.labels import IMAGE_SIZE, NUM_CLASSES
from fer_pipeline.params import ModelParams, TrainParams


def build_model(model_params: ModelParams) -> keras.Model:
    """Build the reference CNN: one Conv-BatchNorm-ReLU-MaxPool block per filter count.

    With the default filters [32, 64, 128] the feature map goes
    (batch, 48, 48, 1) -> (batch, 24, 24, 32) -> (batch, 12, 12, 64) -> (batch, 6, 6, 128).
    """
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name="image")

    features = inputs
    for block, filters in enumerate(model_params.filters, start=1):
        features = keras.layers.Conv2D(
            filters, model_params.kernel_size, padding="same", name=f"block{block}_conv"
        )(features)
        features = keras.layers.BatchNormalization(name=f"block{block}_batchnorm")(features)
        features = keras.layers.ReLU(name=f"block{block}_relu")(features)
        features = keras.layers.MaxPooling2D(pool_size=2, name=f"block{block}_pool")(features)

    features = keras.layers.Flatten(name="flatten")(features)
    features = keras.layers.Dense(model_params.dense_units, activation="relu", name="dense")(features)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="emotion")(features)

    return keras.Model(inputs, outputs, name="fer_reference_cnn")


def compile_model(model: keras.Model, train_params: TrainParams) -> keras.Model:
    """Compile with Adam and categorical cross-entropy on one-hot labels."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=train_params.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
