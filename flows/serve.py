"""Serve deployment `fer/train`: a Prefect runner that runs flow `fer` in this checkout.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve

`make orchestrator` starts it in the background. Run it from the project root:
each flow run is a subprocess in the runner's working directory, where the
stages find `params.yaml`, the raw CSV and their outputs.
"""

from __future__ import annotations

from pathlib import Path

from fer_pipeline.orchestrator import DEPLOYMENT
from flows.fer import fer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = "flows/fer.py:fer"


def main() -> None:
    flow_name, deployment_name = DEPLOYMENT.split("/")
    if flow_name != fer.name:
        raise ValueError(f"deployment {DEPLOYMENT} names flow {flow_name!r}, but the flow is {fer.name!r}")

    # Loaded from its file rather than served from memory, so each run imports
    # the flow again and uses the current code and params.yaml without a restart.
    flow = fer.from_source(source=str(PROJECT_ROOT), entrypoint=ENTRYPOINT)

    # One run at a time: runs share this checkout's data/prepared/, models/ and reports/.
    flow.serve(
        name=deployment_name,
        limit=1,
        tags=["fer2013"],
        description="Train the FER-2013 CNN on this checkout: validate, prepare, train, evaluate, register.",
    )


if __name__ == "__main__":
    main()
