"""The `mlflow server` a launched sweep records to: its store, its command, its readiness.

By default the server keeps `tune`'s own default layout, so a launched sweep lands where
`python -m tune` alone would have put it: the SQLite store `<root>/mlruns/mlflow.db` and
its artifacts beside it in `<root>/mlruns/artifacts` (see `tune.tracking.uri`). Any
database URI MLflow accepts (`postgresql://user@host:5432/db`, `mysql://...`) works as
well; its artifacts then default to `<root>/mlruns/artifacts` too.

Every process of a launch runs on this machine, so the server does not carry artifacts
(`--no-serve-artifacts`): the experiments it creates record the real location
(`file:///...`, `s3://...`) and each process writes there itself. Those runs stay
readable without the server, by `python -m tune`, `tune-promote` and `tune-predict` on
the same store.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from tune.tracking.uri import DEFAULT_STORE, absolute_uri, default_artifact_location, is_local_path

HTTP_WORKERS = 2  # the server's request handlers: a few processes logging per epoch need no more
READY_TIMEOUT = 180.0  # seconds to wait for /health (MLflow starts in a few seconds; a busy CPU is slower)


@dataclass(frozen=True)
class ServerStore:
    """Where the server keeps runs and artifacts.

    Attributes:
        backend: the backend store URI, local paths absolute, e.g. `sqlite:////x/mlruns/mlflow.db`.
        artifacts: the root of new experiments' artifacts, a folder (absolute) or a URI such as
            `s3://bucket/path`.
    """

    backend: str
    artifacts: str


def server_store(root: Path, backend: Optional[str] = None, artifacts: Optional[str] = None) -> ServerStore:
    """The store a launch uses: the given URIs made absolute against `root`, else `tune`'s default layout.

    Args:
        root: the folder the user launched from (`paths.root_dir`).
        backend: a database URI MLflow accepts, or None for `sqlite:///<root>/mlruns/mlflow.db`.
        artifacts: a folder or URI, or None for the folder beside a SQLite file (`<root>/mlruns/artifacts`
            for other databases).
    """
    uri = absolute_uri(backend or f"sqlite:///{DEFAULT_STORE}", root)
    location = artifacts or default_artifact_location(uri, root) or str(root / "mlruns" / "artifacts")
    return ServerStore(uri, absolute_uri(location, root) if is_local_path(location) else location)


def server_command(store: ServerStore, host: str, port: int) -> List[str]:
    """`mlflow server` on `host:port` with `store`, in this Python environment."""
    return [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--host", host, "--port", str(port), "--workers", str(HTTP_WORKERS)),
        *("--uvicorn-opts", "--no-access-log"),  # a line per request would drown the sweep's own
        *("--backend-store-uri", store.backend, "--no-serve-artifacts"),
        *(
            "--default-artifact-root",
            Path(store.artifacts).as_uri() if is_local_path(store.artifacts) else store.artifacts,
        ),
    ]


def wait_until_ready(url: str, alive: Callable[[], bool], timeout: float = READY_TIMEOUT) -> bool:
    """Whether `url/health` answered 200 within `timeout` seconds; gives up as soon as `alive()` is false.

    Args:
        url: the server's base URL, e.g. `http://127.0.0.1:5000`.
        alive: whether waiting still makes sense (the server runs, nobody pressed Ctrl-C).
        timeout: seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):  # not listening yet
            pass
        time.sleep(0.25)
    return False
