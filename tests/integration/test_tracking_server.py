"""A sweep against a real `mlflow server` on 127.0.0.1, checked through its REST API."""

from __future__ import annotations

import pytest
import requests

from conftest import TINY, make_settings
from tune.search.sweep import run_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tracking_server):
    """The module's `mlflow server` (see `tracking_server` in conftest)."""
    return tracking_server


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
