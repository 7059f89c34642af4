"""Flow `fer`: validate -> prepare -> train -> evaluate -> register, on the checkout it runs in.

The same stages as `dvc repro`, so a run gives the same MLflow run (params,
curves, confusion matrices) and registered model version. Run it through
deployment `fer/train`:

    prefect deployment run fer/train -p epochs=3 -p learning_rate=0.0005 --watch
"""

# No `from __future__ import annotations`: Prefect validates the parameters
# with pydantic, which needs the annotations as objects, not strings.
from typing import Any

from prefect import flow, get_run_logger

from fer_pipeline.params import load_params
from flows import caching, tasks
from flows.parameters import DEFAULTS, Filters, PositiveFloat, PositiveInt, Seed, apply

PARAMS_FILE = "params.yaml"


@flow(name="fer", description="Validate, prepare, train, evaluate and register the FER-2013 CNN.")
def fer(
    epochs: PositiveInt = DEFAULTS.train.epochs,
    batch_size: PositiveInt = DEFAULTS.train.batch_size,
    learning_rate: PositiveFloat = DEFAULTS.train.learning_rate,
    seed: Seed = DEFAULTS.train.seed,
    filters: Filters = list(DEFAULTS.model.filters),
    kernel_size: PositiveInt = DEFAULTS.model.kernel_size,
    dense_units: PositiveInt = DEFAULTS.model.dense_units,
) -> dict[str, Any]:
    """Run every stage once with `params.yaml` from the working directory, overridden by these parameters."""
    logger = get_run_logger()
    overrides = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "filters": filters,
        "kernel_size": kernel_size,
        "dense_units": dense_units,
    }
    params = apply(load_params(PARAMS_FILE), overrides)
    logger.info("params: %s", params.flat())

    caching.run_cached(tasks.validate, params)
    caching.run_cached(tasks.prepare, params)

    training = tasks.train(params)
    mlflow_url = tasks.link_mlflow_run(params)

    metrics = tasks.evaluate(params)
    registry = tasks.register(params)

    logger.info(
        "test accuracy %.4f; MLflow run %s (%s); %s version %s",
        metrics["test"]["accuracy"] if "test" in metrics else float("nan"),
        training["run_id"], mlflow_url, registry["registered_model"], registry["version"],
    )
    return {"run_id": training["run_id"], "mlflow_url": mlflow_url, "registry": registry}
