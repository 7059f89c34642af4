"""Shared fixtures: the shipped sample, small CSVs built from it, and a throw-away project copy."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = PROJECT_ROOT / "data" / "sample" / "fer2013-sample.csv.gz"
FULL_CSV = PROJECT_ROOT.parent / "shared" / "data" / "fer2013.csv.gz"
BIN = Path(sys.executable).parent

# What a project copy needs to run the pipeline: configuration and the sample,
# not the environment or earlier outputs. The package itself is installed.
PROJECT_FILES = ["params.yaml", "dvc.yaml", "MLproject", ".dvc/config", ".dvcignore", ".gitignore", "data/sample"]


@pytest.fixture(scope="session")
def sample_lines() -> list[str]:
    """Lines of the shipped sample CSV, header first, without line endings."""
    return gzip.decompress(SAMPLE_CSV.read_bytes()).decode("ascii").splitlines()


@pytest.fixture
def write_csv(tmp_path: Path):
    """Write lines (str) or raw bytes to a CSV file under tmp_path and return its path."""

    def write(content: list[str] | bytes, name: str = "input.csv") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text("\n".join(content) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def full_csv() -> Path:
    """The full FER-2013 CSV beside the checkout; its absence fails under CI=true."""
    if not FULL_CSV.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"full dataset missing at {FULL_CSV}; CI needs ../shared/data/fer2013.csv.gz")
        pytest.skip(f"full dataset not found at {FULL_CSV}")
    return FULL_CSV


def make_project(destination: Path, epochs: int = 1) -> Path:
    """Copy the project's configuration and sample into a fresh git + DVC checkout."""
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    # The package's source files are DVC deps of the stages.
    shutil.copytree(PROJECT_ROOT / "fer_pipeline", destination / "fer_pipeline", ignore=shutil.ignore_patterns("__pycache__"))

    params = destination / "params.yaml"
    params.write_text(params.read_text().replace("epochs: 20", f"epochs: {epochs}"))

    run(["git", "init", "-q"], destination)
    run(["git", "-c", "user.email=test@example.com", "-c", "user.name=test", "commit", "-q", "--allow-empty", "-m", "init"], destination)
    return destination


def run(command: list[str], cwd: Path, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command with the environment's bin first on PATH, as `make` does."""
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    environment.pop("MLFLOW_TRACKING_URI", None)
    environment.pop("MLFLOW_RUN_ID", None)
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}")
    return result
