"""Models with known behaviour, registered straight into a temporary MLflow store.

`colour_model` classifies the generated shapes by their colour alone (near-perfect on them by
construction); `constant_model` always answers one class. Both are plain Keras layers, so they
load in safe mode like a sweep's model, and registering one takes a second, not a sweep.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import keras
import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from PIL import Image

from tune.config.schema import TrackingConfig
from tune.tracking.store import open_store

CHANNEL = {"red": 0, "green": 1, "blue": 2}  # the RGB channel each generated colour raises


def _pooled_dense(size: int, kernel: np.ndarray, bias: np.ndarray) -> keras.Model:
    """Mean RGB of the image `(batch, 3)` -> Dense(softmax) with the given weights."""
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(kernel.shape[1], activation="softmax", name="predictions")
    model = keras.Model(inputs, dense(x))
    dense.set_weights([kernel.astype("float32"), bias.astype("float32")])
    return model


def colour_model(class_names: List[str], size: int = 32) -> keras.Model:
    """Scores class i by the mean of its colour's channel ("red circle" -> red), 1 logit a unit."""
    kernel = np.zeros((3, len(class_names)))
    for i, name in enumerate(class_names):
        kernel[CHANNEL[name.split(" ")[0]], i] = 1.0
    return _pooled_dense(size, kernel, np.zeros(len(class_names)))


def constant_model(num_classes: int, label: int, size: int = 32) -> keras.Model:
    """Always gives class `label` a probability of about 1 - 1e-4."""
    bias = np.zeros(num_classes)
    bias[label] = 10.0
    return _pooled_dense(size, np.zeros((3, num_classes)), bias)


def register(
    tracking: TrackingConfig,
    model: keras.Model,
    class_names: List[str],
    *,
    metadata: bool = True,
    name: Optional[str] = None,
) -> str:
    """Log `model` in its own run, register it as a new version, tag its class names.

    Returns:
        The new version number, a string. No alias is set.
    """
    name = name or tracking.registered_model_name
    experiment_id = open_store(tracking.uri, tracking.experiment_name, tracking.artifact_location)
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.keras.log_model(
            model,
            name="model",
            registered_model_name=name,
            pip_requirements=["keras"],  # no inference run
            metadata={"class_names": class_names} if metadata else None,
        )
    version = str(info.registered_model_version)
    MlflowClient(tracking.uri).set_model_version_tag(name, version, "class_names", json.dumps(class_names))
    return version


def read_test_images(test_dir: Path, class_names: List[str]) -> tuple:
    """Every test image as float32 `(n, h, w, 3)` in [0, 255], with int labels `(n,)`."""
    images, labels = [], []
    for label, name in enumerate(class_names):
        for path in sorted((test_dir / name).glob("*.png")):
            images.append(np.asarray(Image.open(path).convert("RGB"), dtype="float32"))
            labels.append(label)
    return np.stack(images), np.array(labels)


def accuracy(model: keras.Model, test_dir: Path, class_names: List[str]) -> float:
    """Fraction of the test images `model` ranks the right class first, in [0, 1]."""
    images, labels = read_test_images(test_dir, class_names)
    return float(np.mean(model.predict(images, verbose=0).argmax(axis=1) == labels))
