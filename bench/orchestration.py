"""Orchestration overhead: a 1-epoch run on the sample through deployment `fer/train` against `fer run`.

    python bench/orchestration.py [--repeat N]

In a temporary project copy with the shipped sample as the raw CSV:
- start-up: `fer orchestrate start` (what `make orchestrator` runs), the seconds
  until the server responds to its health check and until the command returns with
  the runner serving `fer/train`;
- baseline: `fer --set train.epochs=1 run`, every stage in one process;
- deployment: `fer orchestrate run -p epochs=1 --watch`, the same stages as a
  Prefect flow run, first with an empty task cache, then with validate and
  prepare cached. Each deployment run also reports the server's own timings.

Prints Markdown tables; docs/benchmarks.md records the numbers.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLE_CSV = PROJECT_ROOT / "data" / "sample" / "fer2013-sample.csv.gz"
PROJECT_FILES = ["params.yaml", "dvc.yaml", ".dvc/config", ".dvcignore", "fer_pipeline", "flows"]
COMMAND_TIMEOUT = 900


def make_sample_project() -> Path:
    """Create a temporary git checkout with the project's configuration, code and the sample as raw CSV."""
    project = Path(tempfile.mkdtemp(prefix="fer-bench-orchestration-"))
    for name in PROJECT_FILES:
        source, target = PROJECT_ROOT / name, project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    raw_csv = project / "data" / "raw" / "fer2013.csv"
    raw_csv.parent.mkdir(parents=True)
    raw_csv.write_bytes(gzip.decompress(SAMPLE_CSV.read_bytes()))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    return project


def environment(project: Path) -> dict[str, str]:
    variables = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"))}
    variables["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    variables["PREFECT_HOME"] = str(project / ".prefect")
    return variables


def timed(command: list[str], project: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=project, env=environment(project), capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return seconds


def bench_start(project: Path, port: int) -> tuple[float, float]:
    """Measure the seconds from `fer orchestrate start` to a healthy server, and to the command's return (runner serving)."""
    health_url = f"http://127.0.0.1:{port}/api/health"
    start = time.perf_counter()
    process = subprocess.Popen(["fer", "orchestrate", "start", "--port", str(port)], cwd=project, env=environment(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    healthy_after = None
    deadline = start + COMMAND_TIMEOUT
    while process.poll() is None and time.perf_counter() < deadline:
        if healthy_after is None and _answers(health_url):
            healthy_after = time.perf_counter() - start
        time.sleep(0.1)
    output = process.communicate(timeout=60)[0].decode()
    if process.returncode != 0:
        raise RuntimeError(f"fer orchestrate start exited {process.returncode}:\n{output}")
    return healthy_after or float("nan"), time.perf_counter() - start


def server_timings(project: Path, port: int) -> dict[str, float]:
    """Return the latest flow run's seconds from creation to start (pickup) and from start to end, as the server recorded them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}), get_client(sync_client=True) as client:
        flow_run = client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=1)[0]
    return {
        "pickup": (flow_run.start_time - flow_run.created).total_seconds(),
        "run": (flow_run.end_time - flow_run.start_time).total_seconds(),
    }


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return json.loads(response.read()) is True
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="rounds of baseline + deployment runs (default: 1)")
    arguments = parser.parse_args()

    project = make_sample_project()
    port = _free_port()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; project copy {project}")

    healthy, ready = bench_start(project, port)
    direct, cold, cached, cold_server, cached_server = [], [], [], [], []
    try:
        for _ in range(arguments.repeat):
            direct.append(timed(["fer", "--set", "train.epochs=1", "run"], project))

            # A fresh cache: the deployment run repeats validate and prepare, as `fer run` does.
            shutil.rmtree(project / ".prefect" / "storage", ignore_errors=True)
            cold.append(timed(["fer", "orchestrate", "run", "-p", "epochs=1", "--watch"], project))
            cold_server.append(server_timings(project, port))

            cached.append(timed(["fer", "orchestrate", "run", "-p", "epochs=1", "--watch"], project))
            cached_server.append(server_timings(project, port))
    finally:
        try:
            stop_seconds = timed(["fer", "orchestrate", "stop"], project)
        except RuntimeError:
            # Stop the server and runner by their PIDs even when the command fails.
            from fer_pipeline import orchestrator

            orchestrator.stop(project)
            raise

    best = min
    print("\n| `fer orchestrate start` (make orchestrator) | seconds |\n| --- | --- |")
    print(f"| until the server responds to /api/health | {healthy:.1f} |")
    print(f"| until the runner serves fer/train (command returns) | {ready:.1f} |")
    print(f"| `fer orchestrate stop` | {stop_seconds:.1f} |")

    print(f"\n| 1 epoch on the sample, best of {arguments.repeat} | wall seconds | ratio to `fer run` |\n| --- | --- | --- |")
    print(f"| `fer run` (all stages in one process) | {best(direct):.1f} | 1.00x |")
    print(f"| `fer orchestrate run --watch`, empty cache | {best(cold):.1f} | {best(cold) / best(direct):.2f}x |")
    print(f"| `fer orchestrate run --watch`, validate and prepare cached | {best(cached):.1f} | {best(cached) / best(direct):.2f}x |")
    for label, timings in (("empty cache", cold_server), ("cached", cached_server)):
        pickup = best(timing["pickup"] for timing in timings)
        run = best(timing["run"] for timing in timings)
        print(f"| server side, {label}: created -> started (runner poll) / started -> ended | {pickup:.1f} / {run:.1f} | |")
    shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
