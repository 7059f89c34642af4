"""Start a run of deployment `fer/train` only when a Prefect server and a runner can take it.

`prefect deployment run` creates a Scheduled run even when no runner polls the
deployment, and the run then stays Late until someone notices. `fer orchestrate
run` checks the server, the runner and the parameter names first. When one is
missing, it exits non-zero with the fix. With `--watch` it follows the run,
printing its state changes and logs, until the run ends or the timeout passes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

from fer_pipeline import orchestrator

# A runner polls every 10 s by default (PREFECT_RUNNER_POLL_FREQUENCY; 2 s when
# `make orchestrator` starts it). A deployment not polled for 60 s has no live
# runner: the Prefect server marks it NOT_READY after the same time.
RUNNER_POLL_TIMEOUT = 60.0
WATCH_INTERVAL = 2.0
START_HINT = "start the server and the runner with `make orchestrator`, or point PREFECT_API_URL at a server whose runner serves fer/train"


class OrchestratorUnavailable(RuntimeError):
    """No server responds, or no runner serves the deployment."""


def parse_parameters(pairs: list[str]) -> dict[str, Any]:
    """Parse `key=value` pairs; a value is read as JSON (3, 0.0005, [32, 64]), else kept as text."""
    parameters: dict[str, Any] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"invalid parameter {pair!r}: expected name=value, e.g. epochs=3")
        try:
            parameters[key] = json.loads(text)
        except json.JSONDecodeError:
            parameters[key] = text
    return parameters


def resolve_api_url(root: str | Path = ".") -> str:
    """PREFECT_API_URL when set, else the address of the orchestrator `make orchestrator` started here."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        return configured.rstrip("/")
    state = orchestrator.read_state(root)
    if state is None:
        raise OrchestratorUnavailable(f"no Prefect server is running for this project and PREFECT_API_URL is not set: {START_HINT}")
    return state.api_url


def run_deployment(
    parameters: dict[str, Any],
    root: str | Path = ".",
    watch: bool = False,
    timeout: float = 7200.0,
    runner_timeout: float = RUNNER_POLL_TIMEOUT,
    output: Callable[[str], None] = print,
) -> str:
    """Check the server and runner, create a flow run of `fer/train`, and optionally follow it; return its final or current state name."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.utilities.urls import url_for

    # Prefect's client logs every HTTP request at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    url = resolve_api_url(root)
    if not orchestrator.server_healthy(url):
        raise OrchestratorUnavailable(f"no Prefect server responds at {url}: {START_HINT}")

    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(orchestrator.DEPLOYMENT)
        except ObjectNotFound:
            raise OrchestratorUnavailable(f"deployment {orchestrator.DEPLOYMENT} does not exist on {url}: no runner has served it; {START_HINT}") from None
        _require_live_runner(deployment, root, url, runner_timeout)
        _check_parameter_names(deployment, parameters)

        try:
            flow_run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        except PrefectHTTPStatusError as error:
            # The server checks types and ranges against the flow's parameter schema.
            raise ValueError(f"invalid parameters for {orchestrator.DEPLOYMENT}: {_detail(error)}") from None
        run_url = url_for(flow_run) or f"flow run id {flow_run.id}"
        output(f"created flow run {flow_run.name} ({flow_run.id}) with parameters {parameters or 'defaults'}: {run_url}")
        if not watch:
            return flow_run.state.name if flow_run.state else "Scheduled"

        return _watch(client, flow_run.id, root, url, timeout, runner_timeout, output)


def _require_live_runner(deployment: Any, root: str | Path, url: str, runner_timeout: float) -> None:
    state = orchestrator.read_state(root)
    if state is not None and state.api_url == url and not orchestrator.runner_alive(state):
        raise OrchestratorUnavailable(f"the runner started by `make orchestrator` (PID {state.runner_pid}) has stopped; see {state.log_dir / 'runner.log'}, then restart with `make orchestrator-stop` and `make orchestrator`")

    last_polled = deployment.last_polled
    age = (datetime.now(timezone.utc) - last_polled).total_seconds() if last_polled else None
    if age is None or age > runner_timeout:
        polled = "never" if age is None else f"{age:.0f} s ago"
        raise OrchestratorUnavailable(f"no runner serves {orchestrator.DEPLOYMENT} on {url} (last polled {polled}): {START_HINT}")


def _check_parameter_names(deployment: Any, parameters: dict[str, Any]) -> None:
    # The server checks only the names that the flow's schema lists, so an unknown
    # name would reach the flow run. `prefect deployment run` checks the same way.
    known = sorted((deployment.parameter_openapi_schema or {}).get("properties", {}))
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} for {orchestrator.DEPLOYMENT}; parameters are {', '.join(known)}")


def _watch(client: Any, flow_run_id: UUID, root: str | Path, url: str, timeout: float, runner_timeout: float, output: Callable[[str], None]) -> str:
    from prefect.states import Cancelled

    deadline = time.monotonic() + timeout
    last_state = None
    logs = _LogPrinter(client, flow_run_id, output)
    while True:
        flow_run = client.read_flow_run(flow_run_id)
        state = flow_run.state
        if state.name != last_state:
            output(f"flow run {flow_run.name}: {state.name}" + (f": {state.message}" if state.message else ""))
            last_state = state.name
        logs.print_new()

        if state.is_final():
            # The run's last log lines arrive in the runner's next batches, sent
            # every 2 s (PREFECT_LOGGING_TO_API_BATCH_INTERVAL).
            for _ in range(3):
                time.sleep(WATCH_INTERVAL)
                if not logs.print_new():
                    break
            return state.name

        if state.is_scheduled():
            # Still waiting for a runner: stop waiting as soon as none is left.
            try:
                _require_live_runner(client.read_deployment_by_name(orchestrator.DEPLOYMENT), root, url, runner_timeout)
            except OrchestratorUnavailable as error:
                client.set_flow_run_state(flow_run_id, Cancelled(message=str(error)), force=True)
                raise OrchestratorUnavailable(f"cancelled flow run {flow_run.name}: {error}") from None

        # NOTE: a runner that dies while the run is Pending or Running goes unnoticed
        # here. The run keeps its state, so --watch waits until the timeout.
        if time.monotonic() > deadline:
            output(f"flow run {flow_run.name} is still {state.name} after {timeout:.0f} s; it goes on without this command")
            return state.name
        time.sleep(WATCH_INTERVAL)


class _LogPrinter:
    """Prints a flow run's log lines that were not printed yet, each with its task's name."""

    def __init__(self, client: Any, flow_run_id: UUID, output: Callable[[str], None]):
        self.client = client
        self.flow_run_id = flow_run_id
        self.output = output
        self.printed = 0
        self.task_names: dict[UUID, str] = {}

    def print_new(self) -> int:
        """Print the log lines that arrived since the last call; return how many."""
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
        from prefect.client.schemas.sorting import LogSort

        log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[self.flow_run_id]))
        entries = self.client.read_logs(log_filter=log_filter, sort=LogSort.TIMESTAMP_ASC, offset=self.printed)
        for entry in entries:
            source = self._task_name(entry.task_run_id) if entry.task_run_id else "flow"
            self.output(f"  {entry.timestamp:%H:%M:%S} {source}: {entry.message}")
        self.printed += len(entries)
        return len(entries)

    def _task_name(self, task_run_id: UUID) -> str:
        if task_run_id not in self.task_names:
            self.task_names[task_run_id] = self.client.read_task_run(task_run_id).name
        return self.task_names[task_run_id]


def _detail(error: Any) -> str:
    try:
        return str(error.response.json().get("detail", error))
    except ValueError:
        return str(error)
