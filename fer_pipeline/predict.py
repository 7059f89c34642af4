"""`fer predict`: score photos and FER-format CSV rows with a registered model, as the server does.

In: image files (PNG or JPEG) and CSV files with a `pixels` column (`.csv`
or `.csv.gz`). Out: one prediction per photo and per CSV row, scored by the
same pyfunc that `make serve` serves, loaded in this process.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from fer_pipeline import raw_data
from fer_pipeline.labels import EMOTIONS
from fer_pipeline.serving import BOX_COLUMNS, MAX_ROWS

CSV_SUFFIXES = (".csv", ".csv.gz")
TOP_K = 3


@dataclass
class Prediction:
    """The model's output for one input: a photo file or one CSV row."""

    source: str  # the file, and for a CSV row its line: "faces.csv:2"
    emotion: str | None
    probabilities: dict[str, float] | None
    face_box: dict[str, int] | None
    error: str | None

    def top(self, k: int = TOP_K) -> list[tuple[str, float]]:
        """Return the k most probable emotions with their probabilities, most probable first."""
        if self.probabilities is None:
            return []
        return sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)[:k]


def predict_paths(paths: list[Path], model_uri: str) -> list[Prediction]:
    """Score every photo and CSV row in `paths` with the pyfunc at `model_uri`, in order."""
    sources, requests = read_inputs(paths)
    model = load_model(model_uri)

    outputs = [model.predict(requests.iloc[start : start + MAX_ROWS]) for start in range(0, len(requests), MAX_ROWS)]
    output = pd.concat(outputs, ignore_index=True)
    return [_to_prediction(source, row) for source, row in zip(sources, output.to_dict(orient="records"))]


def read_inputs(paths: list[Path]) -> tuple[list[str], pd.DataFrame]:
    """Build the request rows: `pixels` for each CSV row, `image` (base64) for each photo."""
    sources: list[str] = []
    rows: list[dict[str, str | None]] = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"input not found: {path}")

        if path.name.lower().endswith(CSV_SUFFIXES):
            frame = raw_data.read_raw_csv(path)
            if "pixels" not in frame.columns:
                raise ValueError(f"{path} has no pixels column (columns: {', '.join(frame.columns)}); expected a FER-format CSV")
            lines = raw_data.line_numbers(range(len(frame)))
            sources += [f"{path}:{line}" for line in lines]
            rows += [{"pixels": pixels, "image": None} for pixels in frame["pixels"].tolist()]
        else:
            sources.append(str(path))
            rows.append({"pixels": None, "image": base64.b64encode(path.read_bytes()).decode("ascii")})

    return sources, pd.DataFrame(rows, columns=["pixels", "image"], dtype=object)


def load_model(model_uri: str) -> Any:
    """Load the served pyfunc from the registry or any MLflow model URI."""
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except MlflowException as error:
        raise ValueError(
            f"cannot load {model_uri} from {mlflow.get_tracking_uri()}: {error.message}; "
            "train and register a model first (`make run`) or pass --model-uri"
        ) from None


def format_text(prediction: Prediction) -> str:
    """Format one input as one line: the emotion and the top 3 probabilities, or the error."""
    if prediction.error is not None:
        return f"{prediction.source}: error: {prediction.error}"
    top = ", ".join(f"{emotion} {probability:.2f}" for emotion, probability in prediction.top())
    return f"{prediction.source}: {prediction.emotion} ({top})"


def format_json(predictions: list[Prediction]) -> str:
    """Format the predictions as a JSON array with one object per input, in input order."""
    records = [
        {
            "source": prediction.source,
            "emotion": prediction.emotion,
            "top": [{"emotion": emotion, "probability": probability} for emotion, probability in prediction.top()],
            "probabilities": prediction.probabilities,
            "face_box": prediction.face_box,
            "error": prediction.error,
        }
        for prediction in predictions
    ]
    return json.dumps(records, indent=2)


def _to_prediction(source: str, row: dict[str, Any]) -> Prediction:
    if row["error"] is not None:
        return Prediction(source, None, None, None, row["error"])
    probabilities = {emotion: float(row[emotion]) for emotion in EMOTIONS}
    box = None
    if row["face_x"] is not None:
        box = {column.removeprefix("face_"): int(row[column]) for column in BOX_COLUMNS}
    return Prediction(source, row["emotion"], probabilities, box, None)
