"""A sweep against a real `mlflow server` on 127.0.0.1, checked through its REST API."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import pytest
import requests

from conftest import TINY, make_settings
from tune.search.sweep import run_sweep

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on a free loopback port with a temporary SQLite store and artifact folder."""
    root = tmp_path_factory.mktemp("server")
    port = _free_port()
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


def _api(url: str, path: str, **params):
    response = requests.get(f"{url}/api/2.0/mlflow/{path}", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def test_sweep_over_http_records_parent_children_curves_and_artifacts(server, tmp_path):
    settings = make_settings(tmp_path, [*TINY, f"tracking.uri={server}"])
    result = run_sweep(settings)
    experiment = _api(server, "experiments/get-by-name", experiment_name=settings.tracking.experiment_name)
    search = requests.post(
        f"{server}/api/2.0/mlflow/runs/search",
        json={
            "experiment_ids": [experiment["experiment"]["experiment_id"]],
            "filter": f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
        },
        timeout=30,
    ).json()
    children = search["runs"]
    assert len(children) == len(result.trial_statuses) == 2
    for child in children:
        params = {p["key"]: p["value"] for p in child["data"]["params"]}
        assert {"base_model", "head_width", "learning_rate", "momentum", "thawed_layers"} <= set(params)
        assert child["info"]["status"] == "FINISHED"
        history = _api(server, "metrics/get-history", run_id=child["info"]["run_id"], metric_key="val_accuracy")
        assert [m["step"] for m in history["metrics"]] == [0, 1]
    artifacts = _api(server, "artifacts/list", run_id=result.parent_run_id)
    assert {"config.yaml", "class_names.json"} <= {f["path"] for f in artifacts["files"]}
    version = _api(server, "registered-models/alias", name=settings.tracking.registered_model_name, alias="challenger")
    assert version["model_version"]["version"] == result.model_version
