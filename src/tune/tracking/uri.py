"""Tracking URIs and paths: made absolute, told apart, and refused when MLflow cannot use them.

Relative paths in a config resolve against the folder the user launched from, not the
process's current folder (Hydra may change into its run folder), so every store, data
folder and weights file is the same wherever the command runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional
from urllib.parse import urlparse

SERVER_SCHEMES = ("http", "https", "databricks")  # stores behind a server: the server places artifacts
DEFAULT_STORE = "mlruns/mlflow.db"  # under the launch folder (`paths.root_dir`)
ENVIRONMENT = "MLFLOW_TRACKING_URI"  # MLflow's own variable, obeyed by every command


def absolute_path(path: str, base: Path) -> str:
    """`path` (`~` expanded) made absolute against `base`, normalised."""
    candidate = Path(path).expanduser()
    return str((candidate if candidate.is_absolute() else Path(base) / candidate).resolve())


def absolute_uri(uri: str, base: Path) -> str:
    """A tracking or artifact URI whose local path is made absolute against `base`.

    `sqlite:///mlruns/mlflow.db` (three slashes: relative) becomes
    `sqlite:////<base>/mlruns/mlflow.db`; `file:x`, `file:./x` and `file:///abs` become
    `file:///<absolute>`; a bare path becomes an absolute path; `http(s)://` and other
    schemes, and `sqlite://` in memory, are returned unchanged.
    """
    url = urlparse(uri)
    if url.scheme == "sqlite" and uri.startswith("sqlite:///"):
        path, _, query = uri[len("sqlite:///") :].partition("?")
        if path in ("", ":memory:"):
            return uri
        return f"sqlite:///{absolute_path(path, base)}" + (f"?{query}" if query else "")
    if url.scheme == "file":
        return Path(absolute_path(url.netloc + url.path, base)).as_uri()
    if is_local_path(uri):
        return absolute_path(uri, base)
    return uri


def is_local_path(uri: str) -> bool:
    """Whether `uri` is a plain path (no scheme; a Windows drive letter counts as a path)."""
    scheme = urlparse(uri).scheme
    return scheme == "" or len(scheme) == 1


def is_server(uri: str) -> bool:
    """Whether `uri` names a tracking server (http, https, databricks) rather than local files."""
    return urlparse(uri).scheme in SERVER_SCHEMES


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a `sqlite:///<path>` URI; None for any other store or in memory.

    `sqlite:////abs/path.db` names an absolute path, `sqlite:///rel/path.db` one relative to
    the current folder (SQLAlchemy's convention).
    """
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def registry_problem(uri: str) -> Optional[str]:
    """Why MLflow cannot keep a Model Registry at `uri`, or None when it can.

    MLflow 3 refuses file stores (`file:` URIs and plain folders such as `./mlruns`) for
    the registry; a SQLite file or a tracking server works.
    """
    if urlparse(uri).scheme == "file" or is_local_path(uri):
        return (
            "a file store cannot hold MLflow's Model Registry, where every sweep registers its best model; "
            "use a database, e.g. sqlite:///mlruns/mlflow.db, or a server, e.g. http://127.0.0.1:5000"
        )
    return None


@dataclass(frozen=True)
class Store:
    """The tracking store a command uses, and where that choice came from.

    Attributes:
        uri: the tracking URI, absolute (see `absolute_uri`).
        source: "tracking.uri", "--tracking-uri", "MLFLOW_TRACKING_URI" or "default".
    """

    uri: str
    source: str

    def line(self) -> str:
        """One line, e.g. `tracking store: sqlite:////x/mlruns/mlflow.db (from MLFLOW_TRACKING_URI)`."""
        return f"tracking store: {self.uri} (from {self.source})"


def resolve_store(
    given: Optional[str], given_by: str, environ: Mapping[str, str], base: Path, home: Optional[Path] = None
) -> Store:
    """`given`, else `$MLFLOW_TRACKING_URI`, else the SQLite store `<home>/mlruns/mlflow.db`; absolute.

    Args:
        given: the URI the user named (`tracking.uri`, `--tracking-uri`), or None.
        given_by: how the user named it, for `Store.source`.
        environ: the environment, read for `MLFLOW_TRACKING_URI` (empty counts as unset).
        base: the folder relative paths resolve against (the launch folder).
        home: the folder of the default store (`paths.root_dir`); None: `base`.
    """
    if given:
        return Store(absolute_uri(given, base), given_by)
    if environ.get(ENVIRONMENT):
        return Store(absolute_uri(environ[ENVIRONMENT], base), ENVIRONMENT)
    return Store(absolute_uri(f"sqlite:///{DEFAULT_STORE}", home or base), "default")


def default_artifact_location(uri: str, base: Path) -> Optional[str]:
    """Where a new experiment of the store `uri` keeps its artifacts when none is configured.

    A SQLite store's sit beside its database file (`<db folder>/artifacts`), so the two move
    together; a server places its own (None); another database gets `<base>/mlruns/artifacts`.
    """
    path = sqlite_path(uri)
    if path is not None:
        return str(path.parent / "artifacts")
    return None if is_server(uri) else str(Path(base) / "mlruns" / "artifacts")


def ui_address(experiment_id: str, run_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI page of one run, e.g. `http://127.0.0.1:5000/#/experiments/1/runs/<run id>`.

    Args:
        experiment_id: the run's experiment id, as MLflow gives it (a string number).
        run_id: the run's id (32 hex digits).
        base: where the UI answers: `mlflow ui`'s own address by default, or a tracking
            server's URI; a trailing slash is dropped.
    """
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
