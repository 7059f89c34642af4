"""The served pyfunc: preprocessing and per-row errors in-process, then the real MLflow scoring server.

The unit tests build a small Keras network in the test. The tests marked slow
train the reference model for 1 epoch on the shipped sample (`fer run` in a
project copy), start `make serve` on a free loopback port from another working
directory, and compare the server's responses with in-process predictions.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, ErrorCode
from mlflow.pyfunc import PythonModelContext
from mlflow.tracking import MlflowClient

from conftest import BIN, PROJECT_ROOT, make_project, run
from fer_pipeline import faces, serving
from fer_pipeline.cli import main
from fer_pipeline.labels import EMOTIONS

MODEL_NAME = "fer-emotion-cnn"
CHAMPION_URI = f"models:/{MODEL_NAME}@champion"
SERVER_START_TIMEOUT = 180
REQUEST_TIMEOUT = 120


# --- helpers --------------------------------------------------------------


def sample_pixels(sample_lines: list[str], count: int, start: int = 1) -> list[str]:
    """Pixel strings of `count` sample rows from line `start` on (line 0 is the header)."""
    return [line.split(",")[1] for line in sample_lines[start : start + count]]


def to_face(pixels: str) -> np.ndarray:
    return np.array(pixels.split(" "), dtype=np.uint8).reshape(48, 48)


def face_canvas(face: np.ndarray, scale: int = 3, size: tuple[int, int] = (480, 400), corner: tuple[int, int] = (150, 100)) -> np.ndarray:
    """Place a FER face, enlarged `scale` times, on a plain grey photo of `size` (width, height)."""
    canvas = np.full((size[1], size[0]), 200, dtype=np.uint8)
    side = 48 * scale
    x, y = corner
    canvas[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    return canvas


def encode(image: np.ndarray, extension: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(extension, image)
    assert ok
    return buffer.tobytes()


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def detectable_face(sample_lines) -> np.ndarray:
    """The first sample face that the Haar cascade finds once it is placed in a larger photo."""
    for pixels in sample_pixels(sample_lines, 200):
        face = to_face(pixels)
        try:
            faces.detect_largest_face(face_canvas(face))
        except faces.ImageError:
            continue
        return face
    pytest.fail("the Haar cascade found none of the first 200 sample faces placed in a canvas")


def tiny_network() -> keras.Model:
    """A small CNN with the served input and output shapes, including BatchNorm."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input(shape=(48, 48, 1))
    features = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    features = keras.layers.BatchNormalization()(features)
    features = keras.layers.ReLU()(features)
    features = keras.layers.MaxPooling2D(4)(features)
    features = keras.layers.Flatten()(features)
    outputs = keras.layers.Dense(7, activation="softmax")(features)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def network() -> keras.Model:
    return tiny_network()


@pytest.fixture(scope="module")
def emotion_model(network, tmp_path_factory) -> serving.EmotionModel:
    """The pyfunc as `load_context` builds it, without MLflow logging."""
    path = tmp_path_factory.mktemp("network") / "model.keras"
    network.save(path)
    model = serving.EmotionModel()
    model.load_context(PythonModelContext(artifacts={serving.KERAS_ARTIFACT: str(path)}, model_config=None))
    return model


def probabilities(output: pd.DataFrame) -> np.ndarray:
    return output[list(EMOTIONS)].to_numpy(dtype=np.float64)


# --- faces ----------------------------------------------------------------


def test_decode_base64_rejects_invalid_text():
    with pytest.raises(faces.ImageError, match="image is not valid base64"):
        faces.decode_base64("@@@ not base64 @@@")


def test_decode_base64_accepts_wrapping_and_data_url():
    data = bytes(range(256)) * 4
    text = to_base64(data)
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))

    assert faces.decode_base64(wrapped) == data
    assert faces.decode_base64("data:image/png;base64," + text) == data


def test_decode_base64_rejects_oversized_image():
    text = "A" * (faces.MAX_IMAGE_BYTES // 3 * 4 + 8)

    with pytest.raises(faces.ImageError, match="larger than the 10 MB limit"):
        faces.decode_base64(text)


def test_decode_image_rejects_non_image():
    with pytest.raises(faces.ImageError, match=r"image could not be decoded \(11 bytes\); send a PNG or JPEG"):
        faces.decode_image(b"hello world")


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_decode_image_rejects_too_many_pixels(extension):
    # 48 million black pixels compress to well under a megabyte.
    bomb = encode(np.zeros((8000, 6000), dtype=np.uint8), extension)

    assert len(bomb) < faces.MAX_IMAGE_BYTES
    with pytest.raises(faces.ImageError, match="image is 6000x8000, more than 40,000,000 pixels"):
        faces.decode_image(bomb)


def test_decode_image_rejects_truncated_file(detectable_face):
    png = encode(face_canvas(detectable_face))

    with pytest.raises(faces.ImageError, match="the PNG or JPEG file is damaged"):
        faces.decode_image(png[: len(png) // 2])


def test_decode_image_reads_colour_as_grayscale(detectable_face):
    gray = face_canvas(detectable_face)
    colour = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)

    decoded = faces.decode_image(encode(colour))

    assert decoded.shape == gray.shape
    assert np.array_equal(decoded, gray)


def test_detect_picks_largest_face(detectable_face):
    canvas = face_canvas(detectable_face, scale=4, size=(900, 400), corner=(500, 100))
    canvas[100:244, 50:194] = cv2.resize(detectable_face, (144, 144), interpolation=cv2.INTER_CUBIC)

    box = faces.detect_largest_face(canvas)

    # The larger face covers x 500-692, y 100-292.
    assert 470 <= box.x <= 540
    assert 70 <= box.y <= 140
    assert 150 <= box.width <= 230


def test_detect_reports_missing_face():
    with pytest.raises(faces.ImageError, match="no face found in the 480x400 image"):
        faces.detect_largest_face(np.full((400, 480), 200, dtype=np.uint8))


def test_crop_face_pads_box_at_border():
    gray = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)

    crop = faces.crop_face(gray, faces.FaceBox(x=0, y=0, width=60, height=60))

    assert crop.shape == (48, 48)
    assert crop.dtype == np.uint8


def test_face_from_bytes_finds_placed_face(detectable_face):
    face, box = faces.face_from_bytes(encode(face_canvas(detectable_face), ".jpg"))

    assert face.shape == (48, 48)
    # The face was placed at x 150-294, y 100-244.
    assert abs(box.x + box.width / 2 - 222) < 20
    assert abs(box.y + box.height / 2 - 172) < 20


# --- serving, in-process --------------------------------------------------


def test_predict_pixel_rows_matches_network(emotion_model, network, sample_lines):
    pixels = sample_pixels(sample_lines, 5)
    images = np.stack([to_face(text) for text in pixels])[..., np.newaxis].astype(np.float32) / 255.0

    output = emotion_model.predict(None, pd.DataFrame({"pixels": pixels}))

    expected = keras.ops.convert_to_numpy(network(images, training=False))
    assert list(output.columns) == list(serving.OUTPUT_COLUMNS)
    np.testing.assert_allclose(probabilities(output), expected, atol=1e-6)
    assert output["emotion"].tolist() == [EMOTIONS[index] for index in expected.argmax(axis=1)]
    assert output["error"].isna().all()
    assert output["face_x"].isna().all()


def test_predict_single_and_batch_agree(emotion_model, sample_lines):
    pixels = sample_pixels(sample_lines, 32)

    alone = emotion_model.predict(None, pd.DataFrame({"pixels": pixels[5:6]}))
    batch = emotion_model.predict(None, pd.DataFrame({"pixels": pixels}))

    np.testing.assert_allclose(probabilities(alone)[0], probabilities(batch)[5], atol=1e-5)


def test_predict_photo_row_returns_box(emotion_model, detectable_face):
    photo = to_base64(encode(face_canvas(detectable_face)))

    output = emotion_model.predict(None, pd.DataFrame({"image": [photo]}))

    row = output.iloc[0]
    assert row["error"] is None
    assert row["emotion"] in EMOTIONS
    assert [type(row[column]) for column in serving.BOX_COLUMNS] == [int] * 4
    assert row["face_width"] > 100


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"pixels": "1 2 3"}, "pixels has 3 values, expected 2,304 (48x48)"),
        ({"pixels": "NON NUMERIC"}, "pixels value 1 is 'NON', not an integer"),
        ({"pixels": None}, "pixels and image are both null; send one of them"),
        ({"pixels": 7}, "pixels must be a string of 2,304 integers 0-255 separated by spaces, not int"),
        ({"image": "@@@"}, "image is not valid base64"),
        ({"image": to_base64(b"GIF89a but not really")}, "image could not be decoded (21 bytes)"),
        ({"image": to_base64(encode(np.full((300, 300), 90, dtype=np.uint8)))}, "no face found in the 300x300 image"),
    ],
)
def test_predict_bad_row_gets_error(emotion_model, sample_lines, row, message):
    good = sample_pixels(sample_lines, 1)[0]
    frame = pd.DataFrame([{"pixels": good, "image": None}, {"pixels": None, "image": None, **row}], columns=["pixels", "image"])

    output = emotion_model.predict(None, frame)

    assert message in output.loc[1, "error"]
    assert output.loc[1, "emotion"] is None
    assert output.loc[0, "error"] is None
    assert output.loc[0, "emotion"] in EMOTIONS


def test_predict_bad_pixels_keep_other_rows(emotion_model, sample_lines):
    pixels = sample_pixels(sample_lines, 4)
    pixels[1] = pixels[1].replace(" ", " 256 ", 1)
    pixels[2] = pixels[2] + " 0"

    output = emotion_model.predict(None, pd.DataFrame({"pixels": pixels}))
    alone = emotion_model.predict(None, pd.DataFrame({"pixels": [pixels[0], pixels[3]]}))

    assert output.loc[0, "error"] is None
    assert output.loc[3, "error"] is None
    assert "value 2 is 256, outside 0-255" in output.loc[1, "error"]
    assert "pixels has 2,305 values" in output.loc[2, "error"]
    np.testing.assert_allclose(probabilities(output.iloc[[0, 3]]), probabilities(alone), atol=1e-6)


def test_predict_row_with_both_inputs_gets_error(emotion_model, sample_lines):
    frame = pd.DataFrame({"pixels": sample_pixels(sample_lines, 1), "image": ["abc"]})

    output = emotion_model.predict(None, frame)

    assert output.loc[0, "error"] == "row has both pixels and image; send one of them"


def test_predict_error_message_is_shortened(emotion_model):
    output = emotion_model.predict(None, pd.DataFrame({"pixels": ["x" * 10_000]}))

    assert len(output.loc[0, "error"]) <= serving.MAX_ERROR_LENGTH
    assert output.loc[0, "error"].startswith("pixels value 1 is 'xxx")


def test_predict_output_is_strict_json(emotion_model, sample_lines):
    frame = pd.DataFrame({"pixels": [*sample_pixels(sample_lines, 1), "1 2"]})

    records = emotion_model.predict(None, frame).to_dict(orient="records")

    text = json.dumps(records, allow_nan=False)
    assert json.loads(text)[1]["angry"] is None


def test_request_without_input_column_is_rejected(emotion_model):
    with pytest.raises(serving.RequestError, match="request has no pixels or image column") as raised:
        emotion_model.predict(None, pd.DataFrame({"pixel": ["1 2 3"]}))

    assert raised.value.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE)


def test_request_over_max_rows_is_rejected(emotion_model):
    frame = pd.DataFrame({"pixels": ["1"] * (serving.MAX_ROWS + 1)})

    with pytest.raises(serving.RequestError, match=r"request has 1,025 rows, more than the 1,024 allowed"):
        emotion_model.predict(None, frame)


def test_request_error_ignores_message_rewrite():
    error = serving.RequestError("request has no pixels or image column")

    # What MLflow's scoring server does to an MlflowException raised in predict.
    error.message = f"Failed to predict data '{'payload ' * 10}'. \nError: {error.message}"

    assert error.message == "request has no pixels or image column"
    assert "payload" not in error.serialize_as_json()


def test_unexpected_failure_hides_traceback(emotion_model, monkeypatch, sample_lines):
    def broken(frame):
        raise KeyError("internal detail")

    monkeypatch.setattr(serving, "preprocess", broken)

    with pytest.raises(serving.RequestError) as raised:
        emotion_model.predict(None, pd.DataFrame({"pixels": sample_pixels(sample_lines, 1)}))

    assert raised.value.message == "scoring failed with KeyError; the server log has the details"
    assert raised.value.error_code == ErrorCode.Name(INTERNAL_ERROR)
    assert raised.value.get_http_status_code() == 500


def test_pixel_strings_round_trip(sample_lines):
    pixels = sample_pixels(sample_lines, 3)
    images = np.stack([to_face(text) for text in pixels])[..., np.newaxis].astype(np.float32) / 255.0

    assert serving.pixel_strings(images) == pixels


# --- the real scoring server ------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(project: Path, log_path: Path):
    """Start `make serve` from a directory outside the repository; stop it by its process group."""
    port = free_port()
    environment = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    # -o: never rebuild the environment from inside a test.
    command = ["make", "-C", str(PROJECT_ROOT), "-o", ".venv/.installed", "serve", f"SERVE_PORT={port}", f"BIN={BIN}"]
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, cwd=project, env=environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, log_path)
        yield url
    finally:
        _stop(process)


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    pytest.fail(f"the scoring server did not answer /ping within {SERVER_START_TIMEOUT} s:\n{log_path.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    # make, mlflow and uvicorn share the process group that Popen started.
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def invoke(url: str, body: str | bytes) -> requests.Response:
    return requests.post(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=REQUEST_TIMEOUT)


def records(rows: list[dict]) -> str:
    return json.dumps({"dataframe_records": rows})


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory) -> Path:
    """A project copy where `fer run` trained 1 epoch on the sample and registered the champion."""
    root = make_project(tmp_path_factory.mktemp("serving"), epochs=1)
    run(["fer", "data", "use-sample"], root)
    run(["fer", "run"], root)
    return root


@pytest.fixture(scope="module")
def tracking_client(trained_project) -> MlflowClient:
    mlflow.set_tracking_uri(f"sqlite:///{trained_project / 'mlflow.db'}")
    return MlflowClient()


@pytest.fixture(scope="module")
def champion(tracking_client):
    """The champion loaded in this process, as the server loads it."""
    return mlflow.pyfunc.load_model(CHAMPION_URI)


@pytest.fixture(scope="module")
def server(trained_project, tmp_path_factory):
    with running_server(trained_project, tmp_path_factory.mktemp("logs") / "server.log") as url:
        yield url


@pytest.mark.slow
def test_logged_model_flavors_and_example(champion, tracking_client):
    version = tracking_client.get_model_version_by_alias(MODEL_NAME, "champion")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}/{version.version}"))

    assert set(champion.metadata.flavors) == {"keras", "python_function"}
    assert champion.metadata.get_input_schema().input_names() == ["pixels", "image"]
    assert "error" in champion.metadata.get_output_schema().input_names()
    example = json.loads((local / "serving_input_example.json").read_text())
    assert len(example["dataframe_split"]["data"][0][0].split(" ")) == 2304
    requirements = (local / "requirements.txt").read_text().split()
    assert {line.split("==")[0] for line in requirements} == set(serving.SERVING_PACKAGES)
    assert all("==" in line for line in requirements)
    network = mlflow.keras.load_model(f"models:/{MODEL_NAME}/{version.version}")
    assert network.output_shape == (None, 7)


@pytest.mark.slow
def test_champion_single_and_batch_agree(champion, sample_lines):
    pixels = sample_pixels(sample_lines, 32, start=1500)

    alone = champion.predict(pd.DataFrame({"pixels": pixels[0:1]}))
    batch = champion.predict(pd.DataFrame({"pixels": pixels}))

    np.testing.assert_allclose(probabilities(alone)[0], probabilities(batch)[0], atol=1e-5)


@pytest.mark.slow
def test_server_matches_in_process_rows(server, champion, sample_lines):
    pixels = sample_pixels(sample_lines, 16, start=1800)

    response = invoke(server, records([{"pixels": text} for text in pixels]))

    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["predictions"])
    expected = champion.predict(pd.DataFrame({"pixels": pixels}))
    np.testing.assert_allclose(probabilities(served), probabilities(expected), atol=1e-5)
    assert served["emotion"].tolist() == expected["emotion"].tolist()
    assert served["error"].isna().all()


@pytest.mark.slow
def test_server_matches_in_process_photo(server, champion, detectable_face):
    photos = [to_base64(encode(face_canvas(detectable_face), extension)) for extension in (".png", ".jpg")]

    response = invoke(server, json.dumps({"dataframe_split": {"columns": ["image"], "data": [[photo] for photo in photos]}}))

    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["predictions"])
    expected = champion.predict(pd.DataFrame({"image": photos}))
    np.testing.assert_allclose(probabilities(served), probabilities(expected), atol=1e-5)
    assert served[list(serving.BOX_COLUMNS)].to_numpy().tolist() == expected[list(serving.BOX_COLUMNS)].to_numpy().tolist()
    assert served["error"].isna().all()


def _bad_requests(sample_lines: list[str]) -> dict[str, tuple[str, int, str]]:
    """Bad request name -> (body, expected status, expected text in the message or row error)."""
    good = sample_pixels(sample_lines, 1)[0]
    twenty_mb = to_base64(os.urandom(20_000_000))
    many_rows = json.dumps({"dataframe_split": {"columns": ["pixels"], "data": [[good]] * 10_000}})
    return {
        "missing column": (records([{"pixel": good}]), 400, "request has no pixels or image column"),
        "wrong pixel count": (records([{"pixels": good + " 17"}]), 200, "pixels has 2,305 values, expected 2,304"),
        "non-numeric token": (records([{"pixels": good.replace(" ", " abc ", 1)}]), 200, "pixels value 2 is 'abc', not an integer"),
        "null": (records([{"pixels": None}]), 200, "pixels and image are both null"),
        "invalid base64": (records([{"image": "%%%" + good[:50]}]), 200, "image is not valid base64"),
        "bytes that are no image": (records([{"image": to_base64(b"%PDF-1.4 " * 100)}]), 200, "image could not be decoded"),
        "photo without a face": (records([{"image": to_base64(encode(np.full((400, 480), 200, dtype=np.uint8)))}]), 200, "no face found in the 480x400 image"),
        "empty body": ("", 400, "Ensure that input is a valid JSON formatted string"),
        "20 MB image": (records([{"image": twenty_mb}]), 200, "larger than the 10 MB limit"),
        "10,000 rows": (many_rows, 400, "request has 10,000 rows, more than the 1,024 allowed"),
    }


@pytest.mark.slow
def test_server_survives_bad_requests(server, sample_lines):
    good = sample_pixels(sample_lines, 1)[0]

    for name, (body, status, message) in _bad_requests(sample_lines).items():
        response = invoke(server, body)

        assert response.status_code == status, f"{name}: {response.status_code} {response.text[:500]}"
        reply = response.json()
        text = reply["message"] if status != 200 else reply["predictions"][0]["error"]
        assert message in text, f"{name}: {text}"
        assert "Traceback" not in response.text, name
        assert "stack_trace" not in reply, name
        # No part of the payload comes back: the first 40 characters of a pixel string or base64 text.
        assert good[:40] not in response.text, name
        if name != "empty body":
            # MLflow's own JSON error spans three lines; see the README's "Serving" section.
            assert "\n" not in text, name

        after = invoke(server, records([{"pixels": good}]))
        assert after.status_code == 200, f"after {name}: {after.text[:500]}"
        assert after.json()["predictions"][0]["error"] is None


@pytest.mark.slow
def test_fer_predict_cli_matches_champion(trained_project, champion, detectable_face, sample_lines, monkeypatch, capsys, tmp_path):
    photo = tmp_path / "face.jpg"
    photo.write_bytes(encode(face_canvas(detectable_face), ".jpg"))
    rows = sample_lines[1:4]
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("\n".join([sample_lines[0], *rows]) + "\n")
    monkeypatch.chdir(trained_project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    code = main(["predict", str(photo), str(csv_path), "--json"])

    assert code == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    assert [item["source"] for item in printed] == [str(photo), f"{csv_path}:2", f"{csv_path}:3", f"{csv_path}:4"]
    expected = champion.predict(pd.DataFrame({"pixels": [row.split(",")[1] for row in rows]}))
    for item, (_, row) in zip(printed[1:], expected.iterrows()):
        assert item["emotion"] == row["emotion"]
        assert [entry["emotion"] for entry in item["top"]] == sorted(EMOTIONS, key=lambda name: -row[name])[:3]
    assert printed[0]["face_box"]["width"] > 100

    code = main(["predict", str(photo), str(tmp_path / "missing.png")])
    assert code == 2
    assert "input not found" in capsys.readouterr().err


@pytest.mark.slow
def test_fer_predict_text_reports_row_error(trained_project, sample_lines, monkeypatch, capsys, tmp_path):
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("\n".join([sample_lines[0], sample_lines[1], "0,1 2 3,PublicTest"]) + "\n")
    monkeypatch.chdir(trained_project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    code = main(["predict", str(csv_path)])

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert len(lines) == 2
    assert lines[0].startswith(f"{csv_path}:2: ")
    assert len(lines[0].split("(")[1].split(",")) == 3
    assert lines[1] == f"{csv_path}:3: error: pixels has 3 values, expected 2,304 (48x48)"


@pytest.mark.slow
def test_server_serves_new_champion_after_restart(server, trained_project, tracking_client, sample_lines, tmp_path):
    pixels = sample_pixels(sample_lines, 8, start=1900)
    request = records([{"pixels": text} for text in pixels])
    before = pd.DataFrame(invoke(server, request).json()["predictions"])

    # A second version with the same architecture and fresh weights.
    network = keras.models.clone_model(mlflow.keras.load_model(CHAMPION_URI))
    example = np.stack([to_face(text) for text in pixels[:2]])[..., np.newaxis].astype(np.float32) / 255.0
    experiment = tracking_client.get_experiment_by_name("fer2013")
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        model_uri = serving.log_model(network, example)
    version = mlflow.register_model(model_uri, MODEL_NAME)
    tracking_client.set_registered_model_alias(MODEL_NAME, "champion", version.version)
    expected = mlflow.pyfunc.load_model(CHAMPION_URI).predict(pd.DataFrame({"pixels": pixels}))

    with running_server(trained_project, tmp_path / "restarted.log") as restarted:
        after = pd.DataFrame(invoke(restarted, request).json()["predictions"])

    np.testing.assert_allclose(probabilities(after), probabilities(expected), atol=1e-5)
    assert np.abs(probabilities(after) - probabilities(before)).max() > 1e-3
