"""Tiny worlds for both tiers: generated images, weights=None, one or two epochs, a temporary
MLflow store. Configs are composed with Hydra's Compose API from `tune`'s own config tree,
exactly as `python -m tune` composes them; `debug=tiny` is the shared tiny sweep."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import requests  # noqa: E402

from tune.config.schema import ParamSpec, SearchSpace  # noqa: E402
from tune.config.settings import Settings, compose_config, compose_settings  # noqa: E402, F401

TINY = ["debug=tiny"]  # 3 generated classes, 12 training images each, 32x32, 2 trials of 1+1 epochs
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # Fruits-360 samples, when present


def make_settings(root: Path, overrides: Sequence[str] = ()) -> Settings:
    """Typed settings, as `python -m tune <overrides>` launched from `root` would build them."""
    return compose_settings(root, overrides)


def fixed_space(base_model: str, thawed_layers: int) -> SearchSpace:
    """A search space of one point: `base_model`, head width 8, SGD at 0.05 with momentum 0.9,
    the last `thawed_layers` layers thawed."""
    return SearchSpace(
        base_model=ParamSpec(value=base_model),
        head_width=ParamSpec(value=8),
        learning_rate=ParamSpec(value=0.05),
        momentum=ParamSpec(value=0.9),
        thawed_layers=ParamSpec(value=thawed_layers),
    )


@pytest.fixture(autouse=True)
def own_store(monkeypatch):
    """No test inherits $MLFLOW_TRACKING_URI (MLflow sets it in-process too): each names its own store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def tiny_settings(tmp_path) -> Settings:
    return make_settings(tmp_path, TINY)


@pytest.fixture(scope="module")
def postgres_uri():
    """`postgresql://tune@127.0.0.1:<port>/mlflow`: a throwaway PostgreSQL server (see `tests/postgres.py`)."""
    from postgres import postgres_server

    with postgres_server() as uri:
        yield uri


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """`mlflow server` on a free loopback port with a temporary SQLite store and artifact folder; yields its URL."""
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    mlflow = [sys.executable, "-m", "mlflow"] if not shutil.which("mlflow") else [shutil.which("mlflow")]
    store = ["--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts")]
    process = subprocess.Popen(
        [*mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.RequestException:  # not listening yet, or busy starting
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer on /health within 2 minutes")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
