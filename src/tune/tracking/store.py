"""The MLflow store a sweep writes to: opened once, its experiment created if new.

MLflow creates a new SQLite store's tables, and runs its schema migrations, on first use
without a lock, so two processes opening one new store at once fail ("table experiments
already exists", "duplicate column name"); two creating one new experiment collide too.
`open_store` does both inside an exclusive lock on `<db>.lock` beside the SQLite file, so
one process creates them and the others find them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Optional

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tune.errors import RegistryError
from tune.files import exclusive_lock
from tune.tracking.uri import ENVIRONMENT, is_local_path, is_server, sqlite_path


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an MLflow or OS error, at most `limit` characters, so ours stay on one line."""
    text = (getattr(err, "message", None) or str(err)).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def point_mlflow_at(uri: str) -> None:
    """`mlflow.set_tracking_uri(uri)`, leaving `$MLFLOW_TRACKING_URI` as it was.

    MLflow also writes the URI into that variable (for subprocesses), where a later command
    in the same process would take it for the user's choice (see `tune.tracking.uri.resolve_store`).
    """
    before = os.environ.get(ENVIRONMENT)
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop(ENVIRONMENT, None)
    else:
        os.environ[ENVIRONMENT] = before


def store_lock(uri: str):
    """An exclusive lock beside a SQLite store file (its folder created); a no-op for other stores."""
    path = sqlite_path(uri)
    if path is None:
        return contextlib.nullcontext()
    return exclusive_lock(path.with_name(path.name + ".lock"))


def open_store(uri: str, experiment_name: str, artifact_location: Optional[str]) -> str:
    """Point MLflow at `uri` and return the id of `experiment_name`, created if new.

    A SQLite store moved or copied with its artifacts has its recorded artifact paths
    pointed at the new place first (see `tune.tracking.relocate`), so no run writes to the
    old one.

    Args:
        uri: the tracking URI, absolute (see `tune.tracking.uri.absolute_uri`).
        experiment_name: the MLflow experiment.
        artifact_location: where a new experiment keeps its artifacts, a folder or a URI;
            ignored for a tracking server, which decides itself; None: the store's default.

    Raises:
        RegistryError: the store cannot be opened or written (one line, MLflow's reason).
    """
    from tune.tracking.relocate import follow_moved_store

    point_mlflow_at(uri)
    try:
        with store_lock(uri):
            client = MlflowClient()  # creates the tables of a new SQLite store
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                location = None
                if artifact_location and not is_server(uri):
                    location = (
                        Path(artifact_location).as_uri() if is_local_path(artifact_location) else artifact_location
                    )
                return client.create_experiment(experiment_name, artifact_location=location)
        follow_moved_store(uri)  # before any run writes under the recorded root
        return experiment.experiment_id
    except MlflowException as err:
        raise RegistryError(f"cannot open the MLflow store at {uri}: {first_line(err)}") from None
