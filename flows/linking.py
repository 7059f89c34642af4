"""Links between a Prefect flow run and the MLflow run its `train` task created.

The MLflow run gets tags with the Prefect flow run's id, name, deployment and
UI address. The flow run gets a link artifact that opens the MLflow run. The
run id comes from `models/run.json`, which `train` writes for the stages after it.
"""

from __future__ import annotations

import logging

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient
from prefect.artifacts import create_link_artifact
from prefect.runtime import deployment, flow_run

log = logging.getLogger(__name__)

ARTIFACT_KEY = "mlflow-run"
# Default address of `mlflow ui`. A local SQLite store has no address of its own.
LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"


def link_mlflow_run(run_record: dict[str, str]) -> str:
    """Tag the MLflow run with this flow run and link the flow run to it; return the MLflow run's address."""
    tags = prefect_tags()
    client = MlflowClient(tracking_uri=run_record["tracking_uri"])
    client.log_batch(run_record["run_id"], tags=[RunTag(key, value) for key, value in tags.items()])

    url = mlflow_run_url(run_record)
    description = f"MLflow run `{run_record['run_id']}` in `{run_record['tracking_uri']}`."
    if not run_record["tracking_uri"].startswith(("http://", "https://")):
        # NOTE: the link works only while `mlflow ui` serves this store on its default port.
        description += f" Start the UI first: `mlflow ui --backend-store-uri {run_record['tracking_uri']}`."
    create_link_artifact(link=url, link_text=f"MLflow run {run_record['run_id']}", key=ARTIFACT_KEY, description=description)
    log.info("linked MLflow run %s (%s) to Prefect flow run %s", run_record["run_id"], url, tags["prefect.flow_run_id"])
    return url


def prefect_tags() -> dict[str, str]:
    """Return MLflow tags that name the current Prefect flow run; `prefect.deployment` only when a deployment started it."""
    tags = {
        "prefect.flow_run_id": str(flow_run.id),
        "prefect.flow_run_name": str(flow_run.name),
    }
    if deployment.name:
        tags["prefect.deployment"] = f"{flow_run.flow_name}/{deployment.name}"
    # The UI address is known only when PREFECT_API_URL names a server.
    if str(flow_run.ui_url).startswith(("http://", "https://")):
        tags["prefect.flow_run_url"] = flow_run.ui_url
    return tags


def mlflow_run_url(run_record: dict[str, str]) -> str:
    """Return the address of the run's page in the MLflow UI."""
    uri = run_record["tracking_uri"]
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_MLFLOW_UI
    return f"{base}/#/experiments/{run_record['experiment_id']}/runs/{run_record['run_id']}"

