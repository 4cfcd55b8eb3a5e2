import os

models_path = os.environ.get("STAND_IN_MODELS_PATH", "models")
