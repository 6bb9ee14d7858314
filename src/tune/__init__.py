"""tune: search for the best transfer-learning image classifier and record every trial in MLflow."""

__version__ = "0.1.0"
