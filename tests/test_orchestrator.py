"""The orchestrator for real: a Prefect server and the runner of `fer/train` on a free loopback port.

One orchestrator serves a throw-away project copy for the whole module, started
with `fer orchestrate start` as `make orchestrator` does. The tests run in file
order: a training run through `prefect deployment run`, a run through `fer
orchestrate run --watch` that fails in validate, rejected parameters, then the
runner and the server stop and the wrapper must refuse to start a run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import BIN, PROJECT_ROOT, make_project, run
from fer_pipeline import orchestrator
from fer_pipeline.deployment_runs import OrchestratorUnavailable, run_deployment

pytestmark = pytest.mark.slow

STAGE_TASKS = ["validate", "prepare", "train", "link-mlflow-run", "evaluate", "register"]
RUN_TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy with the sample as raw CSV and an orchestrator on a free port; stopped at the end."""
    root = make_project(tmp_path_factory.mktemp("orchestrated"), epochs=1)
    shutil.copytree(PROJECT_ROOT / "flows", root / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    run(["fer", "data", "use-sample"], root)

    started = command(["fer", "orchestrate", "start", "--port", str(free_port())], root, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield root
    finally:
        command(["fer", "orchestrate", "stop"], root, timeout=120)
        _kill_leftovers(root)


@pytest.fixture(scope="module")
def state(project) -> orchestrator.Orchestrator:
    return orchestrator.Orchestrator(**json.loads((project / ".prefect" / "orchestrator.json").read_text()))


@pytest.fixture(scope="module")
def prefect_client(state):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: state.api_url}), get_client(sync_client=True) as client:
        yield client


def command(arguments: list[str], root: Path, api_url: str | None = None, timeout: int = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a command of the environment in the project, as a user would from a shell."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"))}
    environment["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    # The `prefect` CLI keeps its profile in PREFECT_HOME; keep it in the project copy.
    environment["PREFECT_HOME"] = str(root / ".prefect")
    if api_url:
        environment["PREFECT_API_URL"] = api_url
    return subprocess.run(arguments, cwd=root, env=environment, capture_output=True, text=True, timeout=timeout)


def flow_run_id(output: str) -> str:
    match = re.search(r"UUID: ([0-9a-f-]{36})", output) or re.search(r"created flow run \S+ \(([0-9a-f-]{36})\)", output)
    assert match, output
    return match.group(1)


def task_states(client, run_id: str) -> list[tuple[str, str]]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    ordered = sorted(task_runs, key=lambda task_run: task_run.expected_start_time)
    return [(task_run.name.rsplit("-", 1)[0], task_run.state.name) for task_run in ordered]


def flow_run_count(client) -> int:
    return len(client.read_flow_runs())


def mlflow_client(project: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def test_deployment_run_completes(project, state, prefect_client):
    result = command(
        ["prefect", "deployment", "run", "fer/train", "-p", "epochs=1", "--watch", "--watch-timeout", str(RUN_TIMEOUT)],
        project, api_url=state.api_url, timeout=RUN_TIMEOUT + 60,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Flow run finished successfully in 'Completed'" in result.stdout
    run_id = flow_run_id(result.stdout)
    flow_run = prefect_client.read_flow_run(run_id)
    assert flow_run.state.is_completed()
    assert flow_run.parameters == {"epochs": 1}
    assert task_states(prefect_client, run_id) == [(name, "Completed") for name in STAGE_TASKS]


def test_deployment_run_tracked_in_mlflow(project, state, prefect_client):
    mlflow_run_id = json.loads((project / "models" / "run.json").read_text())["run_id"]
    client = mlflow_client(project)
    mlflow_run = client.get_run(mlflow_run_id)
    [flow_run] = prefect_client.read_flow_runs()

    assert mlflow_run.data.params["train.epochs"] == "1"
    assert mlflow_run.data.params["train.learning_rate"] == "0.001"
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [point.step for point in client.get_metric_history(mlflow_run_id, metric)] == [1], metric
    assert "test/macro_f1" in mlflow_run.data.metrics
    assert mlflow_run.data.tags["prefect.flow_run_id"] == str(flow_run.id)
    assert mlflow_run.data.tags["prefect.deployment"] == "fer/train"
    assert mlflow_run.data.tags["prefect.flow_run_url"].startswith(state.ui_url)

    versions = client.search_model_versions(f"run_id='{mlflow_run_id}'")
    assert [version.name for version in versions] == ["fer-emotion-cnn"]
    assert client.get_model_version_by_alias("fer-emotion-cnn", "champion").version == versions[0].version


def test_deployment_run_links_and_logs(project, state, prefect_client):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, LogFilter, LogFilterFlowRunId

    mlflow_run_id = json.loads((project / "models" / "run.json").read_text())["run_id"]
    [flow_run] = prefect_client.read_flow_runs()

    links = prefect_client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["mlflow-run"])))
    assert [link.flow_run_id for link in links] == [flow_run.id]
    assert f"/runs/{mlflow_run_id}" in links[0].data

    logs = prefect_client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
    messages = "\n".join(entry.message for entry in logs)
    # The library's own log lines reach the UI, not only Prefect's.
    assert "split train: images (1396, 48, 48, 1)" in messages
    assert f"MLflow run {mlflow_run_id} logged model" in messages


def test_wrapper_watch_reports_failed_stage(project, state, prefect_client):
    raw_csv = project / "data" / "raw" / "fer2013.csv"
    lines = raw_csv.read_text().splitlines()
    raw_csv.write_text("\n".join([lines[0], lines[1], "9" + lines[2][1:], *lines[3:]]) + "\n")

    result = command(["fer", "orchestrate", "run", "-p", "epochs=1", "--watch", "--timeout", str(RUN_TIMEOUT)], project, timeout=RUN_TIMEOUT + 60)

    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    run_id = flow_run_id(result.stdout)
    assert re.search(r"flow run \S+: Failed: Flow run encountered an exception: DataValidationError: validation of data/raw/fer2013.csv failed", result.stdout)
    # The stage's own message, from the task's log lines that --watch prints.
    assert "emotion is an integer 0-6: 1 row(s) fail, first on lines 3" in result.stdout
    assert task_states(prefect_client, run_id) == [("validate", "Failed")]
    assert prefect_client.read_flow_run(run_id).state.is_failed()


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["prefect", "deployment", "run", "fer/train", "-p", "epochs=0"], 1, "'epochs'. Failure reason: 0 is less than the minimum of 1"),
        (["prefect", "deployment", "run", "fer/train", "-p", "learning_rate=-1"], 1, "'learning_rate'. Failure reason: -1 is less than or equal to the minimum of 0"),
        (["prefect", "deployment", "run", "fer/train", "-p", "epochs=three"], 1, "'three' is not of type 'integer'"),
        (["prefect", "deployment", "run", "fer/train", "-p", "epoch=1"], 1, "not found on the deployment: 'epoch'"),
        (["fer", "orchestrate", "run", "-p", "epochs=0"], 2, "0 is less than the minimum of 1"),
        (["fer", "orchestrate", "run", "-p", "epoch=1"], 2, "unknown parameter 'epoch' for fer/train"),
    ],
)
def test_bad_parameter_rejected_before_run(project, state, prefect_client, arguments, code, message):
    runs_before = flow_run_count(prefect_client)

    result = command(arguments, project, api_url=state.api_url if arguments[0] == "prefect" else None, timeout=120)

    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == code, output
    assert message in output
    assert flow_run_count(prefect_client) == runs_before


def test_wrapper_refuses_when_runner_stopped(project, state, prefect_client, tmp_path, monkeypatch):
    os.killpg(state.runner_pid, signal.SIGTERM)
    _wait_until_gone(state.runner_pid)
    runs_before = flow_run_count(prefect_client)

    result = command(["fer", "orchestrate", "run", "--watch"], project, timeout=120)

    assert result.returncode == 1
    assert f"the runner started by `make orchestrator` (PID {state.runner_pid}) has stopped" in result.stderr
    assert flow_run_count(prefect_client) == runs_before

    # A shared server with no local state: the deployment's last poll decides.
    time.sleep(2)
    monkeypatch.setenv("PREFECT_API_URL", state.api_url)
    with pytest.raises(OrchestratorUnavailable, match="no runner serves fer/train on .* \\(last polled [0-9]+ s ago\\)"):
        run_deployment({}, root=tmp_path, runner_timeout=1.0)
    assert flow_run_count(prefect_client) == runs_before


def test_stop_then_wrapper_refuses_without_server(project, state):
    stopped = command(["fer", "orchestrate", "stop"], project, timeout=120)

    assert stopped.returncode == 0, stopped.stderr
    assert f"the server (PID {state.server_pid})" in stopped.stdout
    _wait_until_gone(state.server_pid)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", state.port))

    without_state = command(["fer", "orchestrate", "run"], project, timeout=120)
    assert without_state.returncode == 1
    assert "no Prefect server is running for this project and PREFECT_API_URL is not set" in without_state.stderr

    without_server = command(["fer", "orchestrate", "run"], project, api_url=state.api_url, timeout=120)
    assert without_server.returncode == 1
    assert f"no Prefect server responds at {state.api_url}" in without_server.stderr


def _wait_until_gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return
        time.sleep(0.5)
    raise AssertionError(f"PID {pid} still runs {timeout:.0f} s after it was told to stop")


def _kill_leftovers(root: Path) -> None:
    # Only if `stop` failed: the processes this module started, by their recorded PIDs.
    state_file = root / ".prefect" / "orchestrator.json"
    if state_file.is_file():
        recorded = json.loads(state_file.read_text())
        for pid in (recorded["runner_pid"], recorded["server_pid"]):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
