"""Retry policy for the tasks that talk to MLflow: retry transient failures only.

An unreachable tracking server, a timeout or a server that responds "try again
later" can pass; a bad CSV, a missing file or a wrong param cannot, so those
fail the task at once with the stage's own message. The MLflow client already
retries single HTTP requests (MLFLOW_HTTP_REQUEST_MAX_RETRIES); these task
retries cover an outage that outlasts them, such as a tracking server restart.
"""

from __future__ import annotations

from typing import Any

import requests
from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

# Error codes of MLflow's REST API that mean "the server could not serve this now".
TRANSIENT_ERROR_CODES = {"TEMPORARILY_UNAVAILABLE", "RESOURCE_EXHAUSTED", "REQUEST_LIMIT_EXCEEDED"}
TRANSIENT_EXCEPTIONS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.RetryError,
    ConnectionError,
    TimeoutError,
)

# Bounded: at most two retries, 10 s then 60 s apart (plus up to 20 % jitter).
MLFLOW_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": [10, 60], "retry_jitter_factor": 0.2}
# Training retries once only: a failure after `fit` repeats the whole fit.
TRAIN_RETRIES: dict[str, Any] = {"retries": 1, "retry_delay_seconds": [30], "retry_jitter_factor": 0.2}


def is_transient(error: BaseException) -> bool:
    """Tell whether an error, or one it was raised from, is a connection failure or a busy server."""
    seen: set[int] = set()
    current: BaseException | None = error
    # MLflow wraps a requests error in MlflowException while handling it, so
    # the original error is in __context__ rather than __cause__.
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TRANSIENT_EXCEPTIONS):
            return True
        if getattr(current, "error_code", None) in TRANSIENT_ERROR_CODES:
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_if_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect `retry_condition_fn`: retry the task run only when its error is transient."""
    try:
        state.result()
    except Exception as error:
        return is_transient(error)
    return False
