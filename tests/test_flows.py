"""Flow `fer` under Prefect's test harness: parameters, caching, retries, failures and a full run.

The harness starts a temporary Prefect server on a free loopback port with its
own SQLite database; PREFECT_HOME and the cached results live in a temporary
directory. Each test runs the flow in a throw-away project copy.
"""

from __future__ import annotations

import gzip
import json
import socket
from pathlib import Path

import pytest
import requests

import flows  # noqa: F401  (before Prefect: sends the library's logs to the API)
from conftest import SAMPLE_CSV, make_project
from fer_pipeline.params import load_params
from fer_pipeline.prepare import file_md5
from fer_pipeline.validate import DataValidationError
from flows import caching, tasks
from flows.fer import fer
from flows.parameters import DEFAULTS, PARAMS_KEYS, apply
from flows.retries import is_transient

from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import REQUEST_LIMIT_EXCEEDED
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.exceptions import ParameterTypeError, SignatureMismatchError
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_HOME, PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness
from prefect.utilities.callables import parameter_schema

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """A temporary Prefect server and PREFECT_HOME for the tests of this module."""
    home = tmp_path_factory.mktemp("prefect-home")
    updates = {PREFECT_HOME: home, PREFECT_RESULTS_LOCAL_STORAGE_PATH: home / "storage"}
    with temporary_settings(updates=updates), prefect_test_harness(server_startup_timeout=120):
        yield home


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project copy with the shipped sample as the raw CSV, as the working directory, and an empty cache."""
    root = make_project(tmp_path / "project", epochs=1)
    raw_csv = root / "data" / "raw" / "fer2013.csv"
    raw_csv.parent.mkdir(parents=True)
    raw_csv.write_bytes(gzip.decompress(SAMPLE_CSV.read_bytes()))

    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    # Every test starts without cached results of the ones before.
    with temporary_settings(updates={PREFECT_RESULTS_LOCAL_STORAGE_PATH: tmp_path / "prefect-storage"}):
        yield root


@flow(name="validate-and-prepare")
def validate_and_prepare() -> None:
    params = load_params("params.yaml")
    caching.run_cached(tasks.validate, params)
    caching.run_cached(tasks.prepare, params)


@flow(name="register-only")
def register_only(retry_delay: float) -> None:
    tasks.register.with_options(retry_delay_seconds=retry_delay)(load_params("params.yaml"))


def task_states(flow_run_id) -> list[tuple[str, str]]:
    """(task name, state name) of each task run of a flow run, in start order."""
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    ordered = sorted(task_runs, key=lambda run: run.expected_start_time)
    # Task run names are the task name plus a suffix: "validate-e19".
    return [(run.name.rsplit("-", 1)[0], run.state.name) for run in ordered]


def task_run_counts(flow_run_id) -> dict[str, int]:
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: run.run_count for run in task_runs}


def flow_run_logs(flow_run_id) -> str:
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(entry.message for entry in logs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Parameters: checked before a run starts.


def test_parameter_defaults_come_from_params_yaml():
    schema = parameter_schema(fer).model_dump()["properties"]
    params = load_params(PROJECT_ROOT / "params.yaml")

    assert set(schema) == set(PARAMS_KEYS)
    assert schema["epochs"]["default"] == params.train.epochs
    assert schema["learning_rate"]["default"] == params.train.learning_rate
    assert schema["filters"]["default"] == list(params.model.filters)
    assert schema["epochs"]["minimum"] == 1
    assert schema["learning_rate"]["exclusiveMinimum"] == 0


@pytest.mark.parametrize(
    ("values", "name", "reason"),
    [
        ({"epochs": 0}, "epochs", "greater than or equal to 1"),
        ({"epochs": "3"}, "epochs", "valid integer"),
        ({"epochs": True}, "epochs", "valid integer"),
        ({"learning_rate": -0.001}, "learning_rate", "greater than 0"),
        ({"learning_rate": 0}, "learning_rate", "greater than 0"),
        ({"filters": []}, "filters", "at least 1 item"),
        ({"seed": -1}, "seed", "greater than or equal to 0"),
    ],
)
def test_flow_rejects_bad_parameter(values, name, reason):
    with pytest.raises(ParameterTypeError) as error:
        fer.validate_parameters(values)

    assert f"{name}: " in str(error.value)
    assert reason in str(error.value)


def test_flow_rejects_unknown_parameter():
    with pytest.raises(SignatureMismatchError, match="'epoch'"):
        fer.validate_parameters({"epoch": 3})


def test_apply_overrides_params_keys():
    params = apply(DEFAULTS, {"epochs": 3, "learning_rate": 0.0005, "filters": [16, 32]})

    assert params.train.epochs == 3
    assert params.train.learning_rate == 0.0005
    assert params.model.filters == (16, 32)
    assert params.train.batch_size == DEFAULTS.train.batch_size


def test_apply_rejects_unknown_parameter():
    with pytest.raises(ValueError, match="unknown flow parameter 'epoch'"):
        apply(DEFAULTS, {"epoch": 3})


# Caching: keyed on the raw CSV's content and the stage's params from dvc.yaml.


def test_stage_files_follow_dvc_yaml():
    params = load_params(PROJECT_ROOT / "params.yaml")

    prepare = caching.read_stage("prepare", params, PROJECT_ROOT / "dvc.yaml")
    validate = caching.read_stage("validate", params, PROJECT_ROOT / "dvc.yaml")

    assert "data/raw/fer2013.csv" in prepare.inputs
    assert "fer_pipeline/prepare.py" in prepare.inputs
    # validate writes it; validate's key covers it.
    assert "reports/validation.json" not in prepare.inputs
    assert "data/prepared" in prepare.outputs
    assert "reports/validation.json" in validate.outputs
    assert "paths.raw_csv" in prepare.params
    assert "prepare.image_size" in prepare.params
    assert not any(key.startswith("train.") for key in prepare.params)


def test_cache_hit_then_miss_after_one_row_change(harness, project, sample_lines):
    first = validate_and_prepare(return_state=True)
    second = validate_and_prepare(return_state=True)

    # Change the label of one row: still a valid CSV, but other content.
    label, rest = sample_lines[2].split(",", 1)
    changed = f"{(int(label) + 1) % 7},{rest}"
    (project / "data" / "raw" / "fer2013.csv").write_text("\n".join([sample_lines[0], sample_lines[1], changed, *sample_lines[3:]]) + "\n")
    third = validate_and_prepare(return_state=True)

    assert task_states(first.state_details.flow_run_id) == [("validate", "Completed"), ("prepare", "Completed")]
    assert task_states(second.state_details.flow_run_id) == [("validate", "Cached"), ("prepare", "Cached")]
    assert task_states(third.state_details.flow_run_id) == [("validate", "Completed"), ("prepare", "Completed")]
    summary = json.loads((project / "data" / "prepared" / "summary.json").read_text())
    assert summary["raw_csv_md5"] == file_md5(project / "data" / "raw" / "fer2013.csv")


def test_cache_reruns_stage_when_outputs_changed(harness, project):
    validate_and_prepare()
    for path in (project / "data" / "prepared").iterdir():
        path.unlink()
    (project / "data" / "prepared").rmdir()

    state = validate_and_prepare(return_state=True)

    assert task_states(state.state_details.flow_run_id) == [("validate", "Cached"), ("prepare", "Cached"), ("prepare", "Completed")]
    assert (project / "data" / "prepared" / "train.npz").is_file()


# Failures and retries.


def test_failing_stage_fails_flow_with_its_message(harness, project, sample_lines):
    bad = "9" + sample_lines[2][1:]
    (project / "data" / "raw" / "fer2013.csv").write_text("\n".join([sample_lines[0], sample_lines[1], bad, *sample_lines[3:50]]) + "\n")

    state = fer(epochs=1, return_state=True)

    assert state.is_failed()
    assert "validation of data/raw/fer2013.csv failed" in state.message
    with pytest.raises(DataValidationError):
        state.result()
    logs = flow_run_logs(state.state_details.flow_run_id)
    assert "validation of data/raw/fer2013.csv failed" in logs
    assert "first on lines 3" in logs
    assert [name for name, _ in task_states(state.state_details.flow_run_id)] == ["validate"]
    assert not (project / "reports" / "validation.json").exists()


def test_transient_errors_recognized():
    try:
        try:
            raise requests.exceptions.ConnectionError("Connection refused")
        except requests.exceptions.ConnectionError as error:
            # How MLflow's REST client reports an unreachable server.
            raise MlflowException(f"API request to http://127.0.0.1:1/api failed with exception {error}")
    except MlflowException as wrapped:
        unreachable = wrapped

    assert is_transient(unreachable)
    assert is_transient(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "try again later"}))
    assert is_transient(MlflowException("rate limited", error_code=REQUEST_LIMIT_EXCEEDED))
    assert not is_transient(RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such run"}))
    assert not is_transient(MlflowException("plain internal error"))
    assert not is_transient(FileNotFoundError("models/run.json not found"))
    assert not is_transient(ValueError("param train.epochs must be positive"))


def test_register_retries_unreachable_tracking_server(harness, project, monkeypatch):
    # Nothing listens on this loopback port; MLflow's own HTTP retries are off to keep the test short.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    state = register_only(retry_delay=0, return_state=True)

    assert state.is_failed()
    assert "failed with exception" in state.message
    assert task_run_counts(state.state_details.flow_run_id) == {"register": 3}


def test_register_does_not_retry_missing_input(harness, project):
    state = register_only(retry_delay=0, return_state=True)

    assert state.is_failed()
    assert "models/run.json not found" in state.message
    assert task_run_counts(state.state_details.flow_run_id) == {"register": 1}


# The whole flow in process, without a deployment.


@pytest.mark.slow
def test_flow_runs_every_stage(harness, project):
    from mlflow.tracking import MlflowClient

    state = fer(epochs=1, return_state=True)

    assert state.is_completed(), state.message
    flow_run_id = state.state_details.flow_run_id
    assert task_states(flow_run_id) == [
        ("validate", "Completed"), ("prepare", "Completed"), ("train", "Completed"),
        ("link-mlflow-run", "Completed"), ("evaluate", "Completed"), ("register", "Completed"),
    ]

    result = state.result()
    run = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}").get_run(result["run_id"])
    assert run.data.params["train.epochs"] == "1"
    assert run.data.tags["prefect.flow_run_id"] == str(flow_run_id)
    # Called directly, not through a deployment.
    assert "prefect.deployment" not in run.data.tags
    assert "test/accuracy" in run.data.metrics
    assert result["registry"]["version"] == 1
    assert result["mlflow_url"].endswith(f"/runs/{result['run_id']}")

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    links = [artifact for artifact in artifacts if artifact.key == "mlflow-run" and artifact.flow_run_id == flow_run_id]
    assert len(links) == 1
    assert result["run_id"] in links[0].data
