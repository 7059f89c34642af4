"""fer-pipeline: a reproducible FER-2013 training pipeline (DVC, great-expectations, Keras, MLflow)."""

import os

__version__ = "0.1.0"

# Telemetry of the tools the pipeline drives is off unless the user turns it
# back on in the environment. These must be set before those packages import.
for _variable, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "KERAS_BACKEND": "tensorflow",
}.items():
    os.environ.setdefault(_variable, _value)
