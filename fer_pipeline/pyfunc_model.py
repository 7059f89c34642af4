"""The file MLflow runs to build the served pyfunc when it loads a logged model (models from code).

`serving.save_model` logs this file with the model; it is not meant to be imported.
"""

from mlflow.models import set_model

from fer_pipeline.serving import EmotionModel

set_model(EmotionModel())
