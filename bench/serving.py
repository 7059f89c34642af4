"""Serving speed: the MLflow scoring server (`make serve`) against in-process `predict` on the same rows.

    python bench/serving.py [--requests 200] [--batches 20]

Logs the serving pyfunc of the reference CNN with fresh weights (the weights
do not change the cost) to a temporary tracking store and registers it as the
champion. Then starts `make serve` on a free loopback port and measures, with
in-process and HTTP calls alternating per input:

- single-row latency p50/p95: one FER pixel row per request over a kept-alive
  HTTP connection, against `predict` of the same pyfunc loaded in this process;
- batch throughput: requests of 256 rows, in rows/s, HTTP against in-process;
- single-photo latency: a 640x480 PNG with one face (decode, Haar detection, crop);
- for reference, Keras `model.predict` on one preprocessed image, which is what
  the pyfunc of MLflow's keras flavor calls.

Rows come from the shipped sample. Prints a Markdown table; docs/benchmarks.md
records the numbers.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import requests

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = PROJECT_ROOT / "data" / "sample" / "fer2013-sample.csv.gz"
BIN = Path(sys.executable).parent
MODEL_NAME = "fer-emotion-cnn"
CHAMPION_URI = f"models:/{MODEL_NAME}@champion"
BATCH_ROWS = 256
WARM_UP = 10
SERVER_START_TIMEOUT = 180


def main() -> None:
    arguments = _parse_arguments()
    with tempfile.TemporaryDirectory(prefix="fer-bench-serving-") as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(store) / 'mlflow.db'}"
        bench_serving(Path(store), arguments.requests, arguments.batches)


def bench_serving(store: Path, request_count: int, batch_count: int) -> None:
    """Register a champion in `store`, serve it, and print the timings."""
    import mlflow

    from fer_pipeline.raw_data import read_raw_csv

    pixels = read_raw_csv(SAMPLE_CSV)["pixels"].tolist()
    singles = pixels[:request_count]
    # The sample contains 7 batches of 256 rows, so more batches reuse its rows.
    starts = [index * BATCH_ROWS % (len(pixels) - BATCH_ROWS) for index in range(batch_count)]
    batches = [pixels[start : start + BATCH_ROWS] for start in starts]
    photo = make_photo(pixels)

    network = register_champion(store)
    model = mlflow.pyfunc.load_model(CHAMPION_URI)
    image = np.zeros((1, 48, 48, 1), dtype=np.float32)
    keras_predict = latencies(lambda _: network.predict(image, verbose=0), range(50))

    with running_server(store) as url, requests.Session() as session:
        def post(column: str, values: list[str]) -> None:
            response = session.post(
                f"{url}/invocations",
                data=json.dumps({"dataframe_split": {"columns": [column], "data": [[value] for value in values]}}),
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            response.raise_for_status()

        def in_process(column: str, values: list[str]) -> None:
            model.predict(pd.DataFrame({column: values}))

        calls = {"in-process": in_process, "HTTP": post}
        single = paired_latencies(calls, [("pixels", [text]) for text in singles])
        batch = paired_latencies(calls, [("pixels", rows) for rows in batches])
        photos = paired_latencies(calls, [("image", [photo])] * request_count)

    print_table(single, photos, batch, keras_predict)


def register_champion(store: Path):
    """Log the serving pyfunc of the reference CNN to `store` and make it the champion."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from fer_pipeline import serving
    from fer_pipeline.model import build_model
    from fer_pipeline.params import load_params

    network = build_model(load_params(PROJECT_ROOT / "params.yaml", []).model)
    example = np.zeros((2, 48, 48, 1), dtype=np.float32)
    experiment_id = mlflow.create_experiment("bench-serving", artifact_location=(store / "mlartifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment_id):
        model_uri = serving.log_model(network, example)
    version = mlflow.register_model(model_uri, MODEL_NAME)
    MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", version.version)
    return network


def make_photo(pixels: list[str]) -> str:
    """Base64 of a 640x480 PNG with the first sample face that the Haar cascade finds, enlarged 3 times."""
    import cv2

    from fer_pipeline import faces

    for text in pixels[:200]:
        face = np.array(text.split(" "), dtype=np.uint8).reshape(48, 48)
        canvas = np.full((480, 640), 200, dtype=np.uint8)
        canvas[150:294, 250:394] = cv2.resize(face, (144, 144), interpolation=cv2.INTER_CUBIC)
        try:
            faces.detect_largest_face(canvas)
        except faces.ImageError:
            continue
        return base64.b64encode(cv2.imencode(".png", canvas)[1].tobytes()).decode("ascii")
    raise RuntimeError("the Haar cascade found none of the first 200 sample faces")


def latencies(call: Callable[[object], object], inputs) -> np.ndarray:
    """Seconds per call, after WARM_UP calls on the first input."""
    inputs = list(inputs)
    for _ in range(WARM_UP):
        call(inputs[0])
    seconds = []
    for item in inputs:
        start = time.perf_counter()
        call(item)
        seconds.append(time.perf_counter() - start)
    return np.array(seconds)


def paired_latencies(calls: dict[str, Callable[[str, list[str]], None]], inputs: list[tuple[str, list[str]]]) -> dict[str, np.ndarray]:
    """Seconds per call for each way of calling, alternating per input.

    Alternating spreads any background load on the machine over both ways
    alike, so their ratio stays fair.
    """
    for call in calls.values():
        for _ in range(WARM_UP):
            call(*inputs[0])
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for item in inputs:
        for name, call in calls.items():
            start = time.perf_counter()
            call(*item)
            seconds[name].append(time.perf_counter() - start)
    return {name: np.array(values) for name, values in seconds.items()}


@contextmanager
def running_server(store: Path) -> Iterator[str]:
    """Run `make serve` on a free loopback port; stop its process group afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = store / "server.log"
    command = ["make", "-C", str(PROJECT_ROOT), "-o", ".venv/.installed", "serve", f"SERVE_PORT={port}", f"BIN={BIN}"]
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _answers_ping(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the scoring server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _answers_ping(url: str) -> bool:
    try:
        return requests.get(f"{url}/ping", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def print_table(single: dict, photos: dict, batch: dict, keras_predict: np.ndarray) -> None:
    def milliseconds(seconds: np.ndarray) -> str:
        return f"{np.percentile(seconds, 50) * 1000:.1f} / {np.percentile(seconds, 95) * 1000:.1f}"

    def rows_per_second(seconds: np.ndarray) -> float:
        return BATCH_ROWS * len(seconds) / seconds.sum()

    print(f"\nmachine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print("\n| one input per request | requests | in-process p50 / p95 (ms) | HTTP p50 / p95 (ms) |")
    print("| --- | --- | --- | --- |")
    for name, seconds in (("FER pixel row", single), ("640x480 PNG photo", photos)):
        print(f"| {name} | {len(seconds['HTTP'])} | {milliseconds(seconds['in-process'])} | {milliseconds(seconds['HTTP'])} |")
    print(f"| Keras `model.predict`, one preprocessed image | {len(keras_predict)} | {milliseconds(keras_predict)} | |")

    in_process_rate, http_rate = rows_per_second(batch["in-process"]), rows_per_second(batch["HTTP"])
    print(f"\n| {len(batch['HTTP'])} batches of {BATCH_ROWS} FER rows | rows/s |\n| --- | --- |")
    print(f"| in-process `predict` | {in_process_rate:.0f} |")
    print(f"| HTTP | {http_rate:.0f} |")
    print(f"| HTTP / in-process | {http_rate / in_process_rate:.2f} |")


def _parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="single-row and photo requests timed (default: 200)")
    parser.add_argument("--batches", type=int, default=20, help=f"batches of {BATCH_ROWS} rows timed (default: 20)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
