"""A SQLite store moved or copied with its artifacts: its recorded artifact paths follow it.

MLflow records absolute artifact locations in the database (each experiment's, each run's,
each logged model's and model version's). After `mv project elsewhere` they still name the
old folder: loading a model fails ("No such artifact: 'MLmodel'") and a new run writes to
the old place, recreating it. A store's default artifacts sit beside its database file
(`<db folder>/artifacts`, see `tune.tracking.uri.default_artifact_location`), so when an
experiment's recorded root lies elsewhere but its runs' folders are found there, the store
was moved or copied with them: `follow_moved_store` rewrites those paths, old root to new, in
this database only (a copy's original is untouched), before anything reads or writes them.
A root whose files are not found beside the database (a location of the user's choosing)
is left alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple
from urllib.parse import unquote, urlparse

from tune.tracking.store import store_lock
from tune.tracking.uri import sqlite_path

log = logging.getLogger(__name__)
PROBE = 200  # recorded artifact folders looked for beside the database, per experiment


def _columns() -> List[tuple]:
    """(MLflow's SQLAlchemy model, column) of every recorded artifact location."""
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlLoggedModel, SqlRun

    return [
        (SqlExperiment, "artifact_location"),
        (SqlRun, "artifact_uri"),
        (SqlLoggedModel, "artifact_location"),
        (SqlModelVersion, "storage_location"),
        (SqlModelVersion, "source"),
    ]


def local_path(location: Optional[str]) -> Optional[Path]:
    """The folder of a `file:` URI or an absolute path; None for anything else."""
    if not location:
        return None
    url = urlparse(location)
    if url.scheme == "file":
        return Path(unquote(url.path))
    return Path(location) if url.scheme == "" and location.startswith("/") else None


def _under(value: Optional[str], prefix: str) -> bool:
    return bool(value) and (value == prefix or value.startswith(prefix.rstrip("/") + "/"))


def _recorded(session, experiment_id) -> Iterator[str]:
    """Artifact locations of the experiment's runs and logged models, at most `PROBE` of each."""
    from mlflow.store.tracking.dbmodels.models import SqlLoggedModel, SqlRun

    for model, column in ((SqlRun, SqlRun.artifact_uri), (SqlLoggedModel, SqlLoggedModel.artifact_location)):
        rows = session.query(column).filter(model.experiment_id == experiment_id, column.isnot(None)).limit(PROBE)
        yield from (row[0] for row in rows)


def moved_roots(session, here: Path) -> Dict[str, str]:
    """Recorded experiment roots elsewhere whose folders are found under `here` -> `here`, in the same form."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment

    moved = {}
    for experiment_id, location in session.query(SqlExperiment.experiment_id, SqlExperiment.artifact_location):
        root = local_path(location)
        if root is None or root == here or location in moved:
            continue
        for recorded in _recorded(session, experiment_id):
            path = local_path(recorded)
            if path is not None and path.is_relative_to(root) and (here / path.relative_to(root)).exists():
                moved[location] = here.as_uri() if location.startswith("file:") else str(here)
                break
    return moved


def _rewrite(session, moves: Dict[str, str]) -> int:
    """Replace each old root by its new one in every artifact column; the number of values changed."""
    changed = 0
    for model, name in _columns():
        column = getattr(model, name)
        for old, new in moves.items():
            for row in session.query(model).filter(column.startswith(old)):
                value = getattr(row, name)
                if _under(value, old):
                    setattr(row, name, new + value[len(old) :])
                    changed += 1
    return changed


def follow_moved_store(uri: str) -> List[Tuple[str, str]]:
    """Point a moved or copied SQLite store's artifact paths at the artifacts beside it.

    Call after MLflow has opened the store (its tables exist and are migrated). Takes the
    store's lock (see `tune.tracking.store.store_lock`); a no-op for servers and other
    databases, and when nothing moved.

    Returns:
        (old root, new root) of each moved experiment root, as recorded; each is logged.
    """
    path = sqlite_path(uri)
    here = path.parent / "artifacts" if path is not None else None
    if here is None or not here.is_dir():
        return []
    import sqlalchemy
    from sqlalchemy.orm import Session

    engine = sqlalchemy.create_engine(uri)
    try:
        with store_lock(uri), Session(engine) as session:
            moves = moved_roots(session, here)
            changed = _rewrite(session, moves)
            session.commit()
    finally:
        engine.dispose()
    for old, new in moves.items():
        log.warning("tracking store moved: %d artifact paths under %s now point at %s", changed, old, new)
    return list(moves.items())
