"""Prefect driver of the pipeline: flow `fer` and its deployment `fer/train`.

Each task is a thin call into the `fer_pipeline` stage functions, the same ones
`dvc repro` and the `fer` CLI run. `python -m flows.serve` serves the deployment;
`make orchestrator` starts it in the background next to a local Prefect server.
"""

import logging
import os

import fer_pipeline  # noqa: F401  (turns telemetry off before Prefect imports)

# Prefect sends only its own loggers to the API. Naming the library's logger here,
# before Prefect reads its settings on import, puts the stages' log lines (shapes,
# per-class counts, metrics) in each task run's logs in the UI.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "fer_pipeline")
logging.getLogger("fer_pipeline").setLevel(logging.INFO)
