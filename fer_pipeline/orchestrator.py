"""The local Prefect server and the runner of deployment `fer/train`, as background processes.

`fer orchestrate start` (what `make orchestrator` runs) starts both on
127.0.0.1, with PREFECT_HOME, the server's SQLite database and the cached task
results under `.prefect/` in the project. Their output goes to
`.prefect/logs/server.log` and `.prefect/logs/runner.log`, and their PIDs to
`.prefect/orchestrator.json`, from which `fer orchestrate stop` (`make
orchestrator-stop`) stops them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fer_pipeline.files import write_json_atomic

log = logging.getLogger(__name__)

DEPLOYMENT = "fer/train"
HOST = "127.0.0.1"
DEFAULT_PORT = 4200
HOME_DIR = ".prefect"
STATE_FILE = "orchestrator.json"
RUNNER_MODULE = "flows.serve"
# Arguments that identify each process in /proc/PID/cmdline.
SERVER_ARGUMENTS = ("prefect", "server", "start")
RUNNER_ARGUMENTS = (RUNNER_MODULE,)

# On 2 busy CPU cores the server responded after 8-10 s and the runner polled
# 2-6 s later (bench/orchestration.py). The limits leave room for slower machines.
SERVER_START_TIMEOUT = 120.0
RUNNER_START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.5


class OrchestratorError(RuntimeError):
    """The server or the runner could not be started, reached or stopped."""


@dataclass(frozen=True)
class Orchestrator:
    """The server and runner that `start` launched: their PIDs, port and PREFECT_HOME."""

    port: int
    server_pid: int
    runner_pid: int
    home: str

    @property
    def api_url(self) -> str:
        return api_url(self.port)

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_dir(self) -> Path:
        return Path(self.home) / "logs"


def api_url(port: int) -> str:
    """Return the Prefect API address of a server on 127.0.0.1 at `port`."""
    return f"http://{HOST}:{port}/api"


def start(root: str | Path = ".", port: int = DEFAULT_PORT) -> Orchestrator:
    """Start the server and wait until it is healthy, then start the runner and wait until it serves `fer/train`."""
    root = Path(root).resolve()
    running = read_state(root)
    if running is not None:
        raise OrchestratorError(
            f"the orchestrator already runs (server PID {running.server_pid}, runner PID {running.runner_pid}, "
            f"UI {running.ui_url}); stop it first with `make orchestrator-stop`"
        )
    # A state file whose server is gone: stop a runner that may outlive it.
    stop(root)
    _require_free_port(port)

    home = root / HOME_DIR
    (home / "logs").mkdir(parents=True, exist_ok=True)
    environment = prefect_environment(home, port)

    server = _start_server(root, environment, port)
    try:
        runner = _start_runner(root, environment, port)
    except BaseException:
        _stop_process(server.pid)
        raise

    state = Orchestrator(port=port, server_pid=server.pid, runner_pid=runner.pid, home=str(home))
    write_json_atomic(home / STATE_FILE, asdict(state))
    return state


def stop(root: str | Path = ".") -> Orchestrator | None:
    """Stop the runner, then the server, by the PIDs `start` recorded; return what was stopped."""
    state_path = Path(root).resolve() / HOME_DIR / STATE_FILE
    if not state_path.is_file():
        return None

    state = Orchestrator(**json.loads(state_path.read_text(encoding="utf-8")))
    # The runner first, so it does not log connection errors for a server that is going away.
    for pid, arguments in ((state.runner_pid, RUNNER_ARGUMENTS), (state.server_pid, SERVER_ARGUMENTS)):
        if _is_our_process(pid, arguments):
            _stop_process(pid)
    state_path.unlink()
    return state


def read_state(root: str | Path = ".") -> Orchestrator | None:
    """Return the running orchestrator recorded under `.prefect/`, or None when none runs."""
    state_path = Path(root).resolve() / HOME_DIR / STATE_FILE
    if not state_path.is_file():
        return None
    state = Orchestrator(**json.loads(state_path.read_text(encoding="utf-8")))
    if not _is_our_process(state.server_pid, SERVER_ARGUMENTS):
        return None
    return state


def runner_alive(state: Orchestrator) -> bool:
    """Tell whether the runner process that `start` launched still runs."""
    return _is_our_process(state.runner_pid, RUNNER_ARGUMENTS)


def _start_server(root: Path, environment: dict[str, str], port: int) -> subprocess.Popen:
    log_path = root / HOME_DIR / "logs" / "server.log"
    log.info("starting the Prefect server on %s:%d with PREFECT_HOME=%s (log: %s)", HOST, port, root / HOME_DIR, log_path)
    server = _spawn([sys.executable, "-m", *SERVER_ARGUMENTS, "--host", HOST, "--port", str(port)], root, environment, log_path)
    try:
        _wait_for("the Prefect server to respond", lambda: server_healthy(api_url(port)), server, log_path, SERVER_START_TIMEOUT)
    except BaseException:
        _stop_process(server.pid)
        raise
    log.info("Prefect server (PID %d) responds at %s", server.pid, api_url(port))
    return server


def _start_runner(root: Path, environment: dict[str, str], port: int) -> subprocess.Popen:
    log_path = root / HOME_DIR / "logs" / "runner.log"
    log.info("starting the runner of %s (log: %s)", DEPLOYMENT, log_path)
    started = datetime.now(timezone.utc)
    runner = _spawn([sys.executable, "-m", RUNNER_MODULE], root, environment, log_path)
    try:
        # The server keeps the deployment of an earlier session: only a poll
        # after this runner started shows that this runner serves it.
        _wait_for(f"the runner to serve {DEPLOYMENT}", lambda: _polled_since(api_url(port), started), runner, log_path, RUNNER_START_TIMEOUT)
    except BaseException:
        _stop_process(runner.pid)
        raise
    log.info("runner (PID %d) serves deployment %s", runner.pid, DEPLOYMENT)
    return runner


def prefect_environment(home: Path, port: int) -> dict[str, str]:
    """Environment of the server and the runner: PREFECT_HOME under the project, the API on 127.0.0.1:`port`."""
    environment = dict(os.environ)
    environment.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": api_url(port),
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_SERVER_API_PORT": str(port),
            # The address the UI in the browser calls. Set, not derived, so the UI
            # talks to this server whatever else the user's environment names.
            "PREFECT_UI_API_URL": api_url(port),
            "PREFECT_LOGGING_EXTRA_LOGGERS": "fer_pipeline",
            # Prefect's default of 10 s delays each run's start by 5 s on average.
            # Polling a local server every 2 s costs next to nothing.
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return environment


def server_healthy(url: str, timeout: float = 5.0) -> bool:
    """Return whether the Prefect server at API address `url` passes its health check."""
    try:
        return _get_json(f"{url}/health", timeout) is True
    except (OSError, ValueError):
        return False


def deployment_last_polled(url: str, timeout: float = 5.0) -> datetime | None:
    """Return when a runner last polled deployment `fer/train` on the server at API address `url`.

    None when no runner ever polled it, or when the deployment does not exist.
    """
    try:
        deployment = _get_json(f"{url}/deployments/name/{DEPLOYMENT}", timeout)
    except (OSError, ValueError):
        return None
    last_polled = deployment.get("last_polled")
    return datetime.fromisoformat(last_polled) if last_polled else None


def _polled_since(url: str, moment: datetime) -> bool:
    last_polled = deployment_last_polled(url)
    return last_polled is not None and last_polled >= moment


def _get_json(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _require_free_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server does: connections of a stopped server in TIME_WAIT do not block the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise OrchestratorError(
                f"port {port} on {HOST} is in use ({error.strerror}); stop what listens there "
                f"or choose another port: `make orchestrator PREFECT_PORT=4300`"
            ) from None


def _spawn(command: list[str], root: Path, environment: dict[str, str], log_path: Path) -> subprocess.Popen:
    # A new session, so the process outlives `make` and `stop` can signal its
    # whole group (uvicorn and the flow-run subprocesses) by its PID.
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            command, cwd=root, env=environment, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_for(what: str, ready: Callable[[], bool], process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if process.poll() is not None:
            raise OrchestratorError(f"{what} failed: PID {process.pid} exited with code {process.returncode}; last lines of {log_path}:\n{_tail(log_path)}")
        time.sleep(POLL_INTERVAL)
    raise OrchestratorError(f"timed out after {timeout:.0f} s waiting for {what}; last lines of {log_path}:\n{_tail(log_path)}")


def _stop_process(pid: int) -> None:
    """Send SIGTERM to the process group `_spawn` created, then SIGKILL if it outlives STOP_TIMEOUT."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if not _process_exists(pid):
                return
            time.sleep(POLL_INTERVAL)
        log.warning("PID %d did not stop within %.0f s of %s", pid, STOP_TIMEOUT, sig.name)


def _process_exists(pid: int) -> bool:
    try:
        # Reap it if it is our own child, so it does not linger as a zombie.
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # An exited process that its parent has not reaped yet (state Z) has stopped too.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def _is_our_process(pid: int, expected_arguments: tuple[str, ...]) -> bool:
    # A PID from the state file may belong to an unrelated process by now, so
    # compare its command line. Without /proc (not Linux), trust the PID.
    if not _process_exists(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return True
    arguments = cmdline.read_bytes().decode(errors="replace").split("\0")
    return all(argument in arguments for argument in expected_arguments)


def _tail(path: Path, lines: int = 20) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
