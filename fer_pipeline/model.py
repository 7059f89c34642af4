"""The CNN for 48x48 grayscale faces, built with the Keras Functional API, and its prediction step."""

from __future__ import annotations

import keras
import numpy as np

from fer_pipeline.labels import IMAGE_SIZE, NUM_CLASSES
from fer_pipeline.params import ModelParams, TrainParams


def build_model(model_params: ModelParams) -> keras.Model:
    """Build the CNN: per entry of `filters`, Conv-BatchNorm-ReLU (`convs_per_block` times), MaxPool.

    With the reference params (filters [32, 64, 128], one conv per block, no
    dropout) the feature map goes
    (batch, 48, 48, 1) -> (batch, 24, 24, 32) -> (batch, 12, 12, 64) -> (batch, 6, 6, 128).
    Dropout layers exist only when their rate is above 0, so the reference
    model has none.
    """
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name="image")

    features = inputs
    for block, filters in enumerate(model_params.filters, start=1):
        for conv in range(1, model_params.convs_per_block + 1):
            # One conv per block keeps the reference model's layer names (block1_conv).
            suffix = "" if model_params.convs_per_block == 1 else str(conv)
            features = keras.layers.Conv2D(
                filters, model_params.kernel_size, padding="same", name=f"block{block}_conv{suffix}"
            )(features)
            features = keras.layers.BatchNormalization(name=f"block{block}_batchnorm{suffix}")(features)
            features = keras.layers.ReLU(name=f"block{block}_relu{suffix}")(features)
        features = keras.layers.MaxPooling2D(pool_size=2, name=f"block{block}_pool")(features)
        if model_params.block_dropout > 0:
            features = keras.layers.Dropout(model_params.block_dropout, name=f"block{block}_dropout")(features)

    features = keras.layers.Flatten(name="flatten")(features)
    features = keras.layers.Dense(model_params.dense_units, activation="relu", name="dense")(features)
    if model_params.dense_dropout > 0:
        features = keras.layers.Dropout(model_params.dense_dropout, name="dense_dropout")(features)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="emotion")(features)

    return keras.Model(inputs, outputs, name="fer_cnn")


def compile_model(model: keras.Model, train_params: TrainParams) -> keras.Model:
    """Compile with Adam and categorical cross-entropy on one-hot labels."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=train_params.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int, tta_flip: bool = False) -> np.ndarray:
    """Predict class probabilities, shape (n, 7), for images of shape (n, 48, 48, 1).

    With `tta_flip` each image is also predicted mirrored left-right and the
    two probability vectors are averaged (test-time augmentation): faces are
    roughly symmetric, so both views carry the same expression.
    """
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    if tta_flip:
        mirrored = model.predict(np.ascontiguousarray(images[:, :, ::-1, :]), batch_size=batch_size, verbose=0)
        probabilities = (probabilities + mirrored) / 2.0
    return probabilities
