"""The served model: an MLflow pyfunc that owns its preprocessing, logged by the `train` stage.

In: a DataFrame with one row per input and either of two string columns,
`pixels` (a FER-2013 pixel string: 2,304 integers 0-255 separated by spaces)
or `image` (the base64 text of a PNG or JPEG photo). Out: one row per input
with `emotion` and the 7 class probabilities, in columns named after the
emotions. Photo rows also get the face box (`face_x`, `face_y`, `face_width`,
`face_height`). A row that could not be scored gets `error` instead, and the
other rows are still scored. Missing values are None, so the JSON of a
response contains null rather than NaN.

Serve the champion with `make serve`, which runs
`mlflow models serve -m "models:/fer-emotion-cnn@champion" --env-manager local`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pandas as pd
import tensorflow as tf
from mlflow.models import Model, ModelSignature
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.types.schema import ColSpec, Schema

from fer_pipeline import faces, raw_data
from fer_pipeline.labels import EMOTIONS, IMAGE_SIZE

log = logging.getLogger(__name__)

PIXELS_COLUMN = "pixels"
IMAGE_COLUMN = "image"
EMOTION_COLUMN = "emotion"
BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")
ERROR_COLUMN = "error"
OUTPUT_COLUMNS = (EMOTION_COLUMN, *EMOTIONS, *BOX_COLUMNS, ERROR_COLUMN)

# Bounds the memory and time of one request. A client splits larger batches.
MAX_ROWS = 1024
# A per-row message quotes at most this many characters, so a huge invalid
# token is not sent back to the client.
MAX_ERROR_LENGTH = 200

INPUT_SCHEMA = Schema(
    [ColSpec("string", PIXELS_COLUMN, required=False), ColSpec("string", IMAGE_COLUMN, required=False)]
)
OUTPUT_SCHEMA = Schema(
    [ColSpec("string", EMOTION_COLUMN, required=False)]
    + [ColSpec("double", emotion, required=False) for emotion in EMOTIONS]
    + [ColSpec("long", column, required=False) for column in BOX_COLUMNS]
    + [ColSpec("string", ERROR_COLUMN, required=False)]
)
SIGNATURE = ModelSignature(inputs=INPUT_SCHEMA, outputs=OUTPUT_SCHEMA)

# The logged model keeps the Keras file under this artifact name. The file is
# named model.keras so that the model's keras flavor can point at it too.
KERAS_ARTIFACT = "keras_model"
KERAS_FILE = "model.keras"
KERAS_FLAVOR_DATA = f"artifacts/{Path(KERAS_FILE).stem}"
# MLflow builds the pyfunc by running this file (models from code), so loading
# the model unpickles nothing.
MODEL_CODE_FILE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(__file__).resolve().parent
# Everything the package imports when the model is loaded, pinned to the versions it was logged with.
SERVING_PACKAGES = ("mlflow", "tensorflow", "keras", "numpy", "pandas", "pyarrow", "opencv-python-headless")


class RequestError(mlflow.exceptions.MlflowException):
    """A request rejected as a whole: the scoring server returns 400 (or 500) with this one-line message.

    NOTE: MLflow's scoring server (3.17) rewrites `message` of an
    MlflowException raised in predict so that it starts with the input
    DataFrame printed as text. The setter below ignores that rewrite, so the
    response never echoes the payload; a test checks it against the real server.
    """

    def __init__(self, message: str, error_code: int = INVALID_PARAMETER_VALUE) -> None:
        self._fixed_message = message
        super().__init__(message, error_code=error_code)

    @property
    def message(self) -> str:
        return self._fixed_message

    @message.setter
    def message(self, value: str) -> None:
        pass


@dataclass
class Preprocessed:
    """Model inputs for the rows that could be read, and per-row boxes and errors for all rows."""

    images: np.ndarray  # (n_scored, 48, 48, 1) float32 in [0, 1]
    scored_rows: np.ndarray  # indexes of the request rows that `images` holds, in order
    boxes: list[faces.FaceBox | None]
    errors: list[str | None]


class EmotionModel(mlflow.pyfunc.PythonModel):
    """The pyfunc served from the registry: request rows in, emotions and probabilities out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        network = load_network(context.artifacts[KERAS_ARTIFACT])
        self._classify = compile_classifier(network)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        check_request(model_input)
        try:
            batch = preprocess(model_input)
            probabilities = self._classify(batch.images) if len(batch.images) else np.empty((0, len(EMOTIONS)))
        except Exception as error:
            # A bug must not send a stack trace to the client: the scoring
            # server would put it in the response. The log keeps it.
            log.exception("scoring %d rows failed", len(model_input))
            raise RequestError(
                f"scoring failed with {type(error).__name__}; the server log has the details",
                error_code=INTERNAL_ERROR,
            ) from None

        _log_row_errors(batch.errors)
        return build_output(batch, probabilities)


def load_network(path: str | Path) -> keras.Model:
    """Load the trained Keras network for inference only (no optimizer state)."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"Keras runs on the {keras.backend.backend()!r} backend, but the model was trained with TensorFlow; "
            "set KERAS_BACKEND=tensorflow before starting Python"
        )
    return keras.saving.load_model(path, compile=False)


def compile_classifier(network: keras.Model) -> Any:
    """Wrap the network in one compiled TensorFlow function, in inference mode.

    `model.predict` sets up a data pipeline on every call, which costs tens of
    milliseconds for one image. One function traced for any batch size skips
    that: for one image it took 1.7 ms against 10 ms for an eager call (2 busy
    CPU cores). `training=False` makes BatchNorm use its moving statistics, so
    an image scores the same alone and inside a batch.
    """

    @tf.function(input_signature=[tf.TensorSpec((None, IMAGE_SIZE, IMAGE_SIZE, 1), tf.float32)])
    def classify(images: tf.Tensor) -> tf.Tensor:
        return network(images, training=False)

    # Trace now, so the first request does not pay for it.
    classify(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32))
    return lambda images: classify(images).numpy()


def check_request(frame: Any) -> None:
    """Reject a request that has no input column or too many rows."""
    problem = None
    if not isinstance(frame, pd.DataFrame):
        problem = f"input is a {type(frame).__name__}; send a DataFrame with a pixels or image column"
    elif PIXELS_COLUMN not in frame.columns and IMAGE_COLUMN not in frame.columns:
        problem = (
            "request has no pixels or image column; send rows with pixels (2,304 integers 0-255 "
            "separated by spaces) or image (base64 of a PNG or JPEG)"
        )
    elif len(frame) > MAX_ROWS:
        problem = f"request has {len(frame):,} rows, more than the {MAX_ROWS:,} allowed; split it into smaller batches"

    if problem:
        log.warning("rejected request: %s", problem)
        raise RequestError(problem)


def preprocess(frame: pd.DataFrame) -> Preprocessed:
    """Turn each request row into a 48x48 face, or an error message for that row."""
    rows = len(frame)
    pixels = _column_values(frame, PIXELS_COLUMN)
    images = _column_values(frame, IMAGE_COLUMN)
    errors: list[str | None] = [None] * rows
    boxes: list[faces.FaceBox | None] = [None] * rows
    face_images = np.zeros((rows, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)

    pixel_rows, image_rows = _split_rows(pixels, images, errors)
    _read_pixel_rows(pixels, pixel_rows, face_images, errors)
    for row in image_rows:
        try:
            face_images[row], boxes[row] = faces.face_from_base64(images[row])
        except faces.ImageError as error:
            errors[row] = str(error)

    scored_rows = np.array([row for row in range(rows) if errors[row] is None], dtype=np.int64)
    # Scaled as in training (prepare.load_split): uint8 / 255 as float32.
    model_images = face_images[scored_rows, :, :, np.newaxis].astype(np.float32) / 255.0
    return Preprocessed(model_images, scored_rows, boxes, [_shorten(error) for error in errors])


def build_output(batch: Preprocessed, probabilities: np.ndarray) -> pd.DataFrame:
    """Assemble one output row per request row; unscored rows carry only `error`."""
    rows = len(batch.errors)
    columns: dict[str, list[Any]] = {name: [None] * rows for name in OUTPUT_COLUMNS}

    for row, scores in zip(batch.scored_rows.tolist(), probabilities):
        columns[EMOTION_COLUMN][row] = EMOTIONS[int(np.argmax(scores))]
        for emotion, score in zip(EMOTIONS, scores):
            columns[emotion][row] = float(score)
    for row, box in enumerate(batch.boxes):
        if box is not None:
            for column, value in zip(BOX_COLUMNS, box):
                columns[column][row] = int(value)
    columns[ERROR_COLUMN] = batch.errors

    # Object columns keep None: float columns would turn it into NaN, which is not valid JSON.
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()})


def log_model(network: keras.Model, example_images: np.ndarray) -> str:
    """Log the network as the serving pyfunc to the active run and return the logged model's URI.

    `example_images` are model inputs, (n, 48, 48, 1) float32 in [0, 1]; the
    input example contains them as FER pixel strings.
    """
    example = pd.DataFrame({PIXELS_COLUMN: pixel_strings(example_images)})
    # Model.log still takes the deprecated artifact_path positionally; name replaces it.
    info = Model.log(
        artifact_path=None,
        name="model",
        flavor=sys.modules[__name__],
        network=network,
        input_example=example,
        pip_requirements=pinned_requirements(),
    )
    return info.model_uri


def save_model(
    path: str,
    mlflow_model: Model,
    network: keras.Model,
    input_example: pd.DataFrame,
    pip_requirements: list[str],
) -> None:
    """Save the pyfunc with the network as its artifact, plus a keras flavor for the same file.

    `Model.log` calls this with a fresh `path`. The keras flavor lets
    `mlflow.keras.load_model` return the bare network of a registered version.
    """
    with tempfile.TemporaryDirectory() as staging:
        keras_file = Path(staging) / KERAS_FILE
        network.save(keras_file)

        mlflow_model.add_flavor(
            "keras",
            data=KERAS_FLAVOR_DATA,
            keras_version=keras.__version__,
            keras_backend=keras.backend.backend(),
            save_exported_model=False,
        )
        mlflow.pyfunc.save_model(
            path,
            python_model=str(MODEL_CODE_FILE),
            artifacts={KERAS_ARTIFACT: str(keras_file)},
            # The package travels with the model, so a registered version keeps
            # the preprocessing code it was trained with.
            code_paths=[str(PACKAGE_DIR)],
            signature=SIGNATURE,
            input_example=input_example,
            pip_requirements=pip_requirements,
            mlflow_model=mlflow_model,
        )


def pinned_requirements() -> list[str]:
    """Pin the packages the served model imports to the versions installed now."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in SERVING_PACKAGES]


def pixel_strings(images: np.ndarray) -> list[str]:
    """Format model inputs, (n, 48, 48, 1) float32 in [0, 1], as FER pixel strings."""
    values = np.rint(np.asarray(images).reshape(len(images), -1) * 255.0).astype(np.uint8)
    return [" ".join(map(str, row)) for row in values.tolist()]


def _split_rows(pixels: list[Any], images: list[Any], errors: list[str | None]) -> tuple[list[int], list[int]]:
    # Each row must carry exactly one of the two inputs.
    pixel_rows, image_rows = [], []
    for row, (pixel_value, image_value) in enumerate(zip(pixels, images)):
        has_pixels, has_image = not _is_missing(pixel_value), not _is_missing(image_value)
        if has_pixels and has_image:
            errors[row] = "row has both pixels and image; send one of them"
        elif has_pixels:
            pixel_rows.append(row)
        elif has_image:
            image_rows.append(row)
        else:
            errors[row] = "pixels and image are both null; send one of them"
    return pixel_rows, image_rows


def _read_pixel_rows(pixels: list[Any], rows: list[int], face_images: np.ndarray, errors: list[str | None]) -> None:
    text_rows = []
    for row in rows:
        if isinstance(pixels[row], str):
            text_rows.append(row)
        else:
            errors[row] = (
                f"pixels must be a string of 2,304 integers 0-255 separated by spaces, not {type(pixels[row]).__name__}"
            )
    if not text_rows:
        return

    # One vectorized parse for the usual all-valid batch; row by row only to find the bad rows.
    try:
        face_images[text_rows] = _parse(pd.Series([pixels[row] for row in text_rows], dtype=object))
        return
    except raw_data.RawDataError:
        pass
    for row in text_rows:
        try:
            face_images[row] = _parse(pd.Series([pixels[row]], dtype=object))[0]
        except raw_data.RawDataError:
            problem = raw_data.describe_pixel_problem(pixels[row]) or "pixels could not be parsed"
            errors[row] = problem if problem.startswith("pixels") else f"pixels {problem}"


def _parse(pixels: pd.Series) -> np.ndarray:
    return raw_data.parse_pixels(pixels)[..., 0]


def _column_values(frame: pd.DataFrame, column: str) -> list[Any]:
    if column not in frame.columns:
        return [None] * len(frame)
    return frame[column].tolist()


def _is_missing(value: Any) -> bool:
    # JSON null arrives as None, or as NaN in pandas' string columns.
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _shorten(message: str | None) -> str | None:
    if message is None or len(message) <= MAX_ERROR_LENGTH:
        return message
    return message[: MAX_ERROR_LENGTH - 3] + "..."


def _log_row_errors(errors: list[str | None]) -> None:
    failed = [(row, error) for row, error in enumerate(errors) if error is not None]
    if failed:
        row, error = failed[0]
        log.warning("%d of %d rows not scored; first, row %d: %s", len(failed), len(errors), row, error)
