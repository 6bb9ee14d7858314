"""The MLflow Model Registry that sweeps write: registering a model, reading versions, models, class names.

A sweep registers each best model as a new version of `<data.name>-classifier` with the alias
`challenger`; `python -m tune.promote` moves the alias `champion`; `python -m tune.predict`
loads a version by URI. Models load in Keras safe mode only: they hold no custom objects
(see `tune.model`), so nothing in a model file may run code.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import List, Optional, Union

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tune.errors import RegistryError
from tune.tracking.relocate import follow_moved_store
from tune.tracking.store import first_line, point_mlflow_at
from tune.tracking.uri import sqlite_path

CHAMPION = "champion"  # the alias of the version in use; moved by `tune.promote`
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # MLflow's codes for a missing name
# For the first request to a tracking server only: one retry after 1 s, 15 s timeout, instead
# of MLflow's default of 7 retries with growing backoff (minutes before a dead server is named).
_PROBE_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


@contextlib.contextmanager
def _impatient():
    """MLflow's HTTP retry settings of `_PROBE_ENV` for a while, where the user set none."""
    added = {key: value for key, value in _PROBE_ENV.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def open_registry(uri: str, hint: str) -> MlflowClient:
    """Point MLflow at the store `uri` and check it answers.

    Args:
        uri: an MLflow tracking URI, e.g. `sqlite:////abs/mlruns/mlflow.db` or `http://host:5000`.
        hint: what the user can do when the store is missing, appended to the error.

    Returns:
        A client of that store; `mlflow` itself also points at it (for `models:/` URIs). A
        SQLite store moved or copied with its artifacts reads them from its new place (see
        `tune.tracking.relocate`).

    Raises:
        RegistryError: a SQLite file that does not exist (MLflow would make an empty one),
            or a store that cannot be read.
    """
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise RegistryError(f"no MLflow store at '{path}' (tracking URI {uri}); {hint}")
    client = MlflowClient(uri)
    try:
        with _impatient():
            client.search_registered_models(max_results=1)
    except MlflowException as err:
        raise RegistryError(f"cannot read the MLflow store at {uri}: {first_line(err)}") from None
    follow_moved_store(uri)
    point_mlflow_at(uri)
    return client


def registered_names(client: MlflowClient) -> List[str]:
    """The names of every registered model in the store, sorted."""
    return sorted(model.name for model in client.search_registered_models())


def require_model(client: MlflowClient, name: str) -> None:
    """Check the registered model `name` exists.

    Raises:
        RegistryError: it does not; the message lists the names the store has.
    """
    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code not in _NOT_FOUND:
            raise RegistryError(f"cannot read registered model '{name}': {first_line(err)}") from None
        raise RegistryError(
            f"no registered model '{name}' in the store; it has {registered_names(client)}. "
            "A sweep (python -m tune) registers <data.name>-classifier"
        ) from None


def version_by_alias(client: MlflowClient, name: str, alias: str) -> Optional[ModelVersion]:
    """The version of `name` that holds `alias`, or None when no version does."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in _NOT_FOUND:
            return None
        raise RegistryError(f"cannot read alias @{alias} of '{name}': {first_line(err)}") from None


def get_version(client: MlflowClient, name: str, version: Union[int, str]) -> ModelVersion:
    """Version `version` of registered model `name`.

    Raises:
        RegistryError: there is no such version.
    """
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as err:
        raise RegistryError(f"registered model '{name}' has no version {version}: {first_line(err)}") from None


def class_names(model_uri: str, client: Optional[MlflowClient] = None) -> List[str]:
    """The class names stored with a logged model; label i is `class_names[i]`.

    Read from the MLmodel metadata (`{"class_names": [...]}`), else, for a `models:/<name>/<n>`
    or `models:/<name>@<alias>` URI, from the version's `class_names` tag (a JSON list).

    Raises:
        RegistryError: no model at `model_uri`, or neither place holds class names.
    """
    try:
        metadata = mlflow.models.get_model_info(model_uri).metadata or {}
    except (MlflowException, OSError) as err:
        raise RegistryError(f"no model at {model_uri}: {first_line(err)}") from None
    names = metadata.get("class_names")
    if names is None and client is not None and model_uri.startswith("models:/"):
        names = json.loads(_version_of(client, model_uri).tags.get("class_names", "null"))
    if not names:
        raise RegistryError(f"the model at {model_uri} stores no class names (MLmodel metadata or version tag)")
    return [str(name) for name in names]


def _version_of(client: MlflowClient, model_uri: str) -> ModelVersion:
    """The registry version a `models:/<name>/<n>` or `models:/<name>@<alias>` URI names."""
    ref = model_uri[len("models:/") :]
    if "@" in ref:
        name, alias = ref.split("@", 1)
        found = version_by_alias(client, name, alias)
        if found is None:
            raise RegistryError(f"no version of '{name}' holds alias @{alias}")
        return found
    name, _, number = ref.rpartition("/")
    return get_version(client, name, number)


def load_classifier(model_uri: str):
    """Load a Keras classifier logged with `mlflow.keras.log_model`, in Keras safe mode.

    Args:
        model_uri: any MLflow model URI, e.g. `models:/shapes-classifier@champion`,
            `models:/shapes-classifier/3` or `runs:/<run id>/model`.

    Returns:
        The `keras.Model`: float32 `(batch, h, w, 3)` RGB in [0, 255] in, float32
        `(batch, num_classes)` softmax probabilities out.

    Raises:
        RegistryError: no model, version or alias at `model_uri`, or a model holding Python
            code (refused, never run).
    """
    import mlflow.keras

    try:
        return mlflow.keras.load_model(model_uri, load_model_kwargs={"safe_mode": True, "compile": False})
    except (MlflowException, OSError) as err:
        raise RegistryError(f"cannot load a model from {model_uri}: {first_line(err)}") from None
    except (ValueError, TypeError) as err:  # what Keras raises for serialised Python code
        raise RegistryError(
            f"refused to load {model_uri}: it holds Python code (a Lambda layer or a custom "
            f"object), which Keras safe mode does not run ({first_line(err)[:200]})"
        ) from None


def input_size(model) -> tuple:
    """(height, width) in pixels of the images `model` takes.

    Raises:
        RegistryError: the model's input has no fixed height and width.
    """
    shape = tuple(model.input_shape)  # (batch, height, width, 3)
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise RegistryError(f"the model takes input of shape {shape}; expected (batch, height, width, 3)")
    return int(shape[1]), int(shape[2])


def model_requirements() -> List[str]:
    """The pip requirements a logged model needs to load: this process's versions of the model's packages.

    What MLflow would infer for a Keras model (mlflow, keras, numpy, tensorflow; checked
    against its inference), given here so that logging does not spend a subprocess that
    loads the model again to find them out.
    """
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("mlflow", "keras", "numpy", "tensorflow")]


def register_model(
    run_id: str, model, class_names: List[str], sample, registered_model_name: str, alias: str
) -> ModelVersion:
    """Log `model` on the run `run_id`, register it as a new version and give it `alias`.

    Args:
        run_id: the sweep's run; the model becomes its logged model `model`.
        model: the trained classifier; float32 `(batch, h, w, 3)` RGB in [0, 255] in,
            `(batch, num_classes)` probabilities out.
        class_names: label i is `class_names[i]`; stored in the MLmodel metadata, in the
            version's `class_names` tag and as the run's `class_names.json`.
        sample: a few input images, float32 `(n, h, w, 3)`, for the signature.
        registered_model_name: the registered model, created if new.
        alias: the alias the new version gets (moved from any other version).

    Returns:
        The `ModelVersion` registered.
    """
    import mlflow.keras
    from mlflow.models import infer_signature

    client = MlflowClient()
    signature = infer_signature(sample, model.predict(sample, verbose=0))
    client.log_text(run_id, json.dumps(class_names, indent=1), "class_names.json")
    with mlflow.start_run(run_id=run_id):
        info = mlflow.keras.log_model(
            model,
            name="model",
            signature=signature,
            metadata={"class_names": class_names},
            registered_model_name=registered_model_name,
            pip_requirements=model_requirements(),
        )
    version = client.get_model_version(registered_model_name, str(info.registered_model_version))
    client.set_registered_model_alias(registered_model_name, alias, version.version)
    client.set_model_version_tag(registered_model_name, version.version, "class_names", json.dumps(class_names))
    return version
