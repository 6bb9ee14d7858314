"""Tracking URIs and paths made absolute against the launch folder, and stores MLflow cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from tune.tracking.uri import absolute_uri, default_tracking_uri, is_server, registry_problem, sqlite_path, ui_address

BASE = Path("/home/ana/project")


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("sqlite:///mlruns/mlflow.db", "sqlite:////home/ana/project/mlruns/mlflow.db"),
        ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),
        ("sqlite:///db.sqlite?timeout=20", "sqlite:////home/ana/project/db.sqlite?timeout=20"),
        ("sqlite://", "sqlite://"),
        ("file:./x", "file:///home/ana/project/x"),
        ("file:x/y", "file:///home/ana/project/x/y"),
        ("file:///abs/runs", "file:///abs/runs"),
        ("runs/../mlruns", "/home/ana/project/mlruns"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("s3://bucket/artifacts", "s3://bucket/artifacts"),
    ],
)
def test_local_uris_become_absolute_and_remote_ones_stay(uri, expected):
    assert absolute_uri(uri, BASE) == expected


def test_file_stores_are_refused_for_the_registry_and_databases_and_servers_are_not():
    for uri in ("file:///x/mlruns", "/x/mlruns", "mlruns"):
        assert "cannot hold MLflow's Model Registry" in registry_problem(uri)
    for uri in ("sqlite:////x/mlflow.db", "http://127.0.0.1:5000", "postgresql://u@h/db"):
        assert registry_problem(uri) is None
    assert is_server("https://host") and not is_server("sqlite:////x.db")
    assert sqlite_path("sqlite:////x/m.db?timeout=5") == Path("/x/m.db") and sqlite_path("sqlite://") is None


def test_the_default_store_is_the_given_one_then_the_environment_then_the_launch_folder():
    assert default_tracking_uri("http://h:1", {"MLFLOW_TRACKING_URI": "http://e:2"}, BASE) == "http://h:1"
    assert default_tracking_uri(None, {"MLFLOW_TRACKING_URI": "http://e:2"}, BASE) == "http://e:2"
    assert default_tracking_uri(None, {}, BASE) == "sqlite:////home/ana/project/mlruns/mlflow.db"


def test_ui_address_points_at_the_run_page():
    run = "0123456789abcdef0123456789abcdef"
    assert ui_address("4", run) == f"http://127.0.0.1:5000/#/experiments/4/runs/{run}"
    assert ui_address("4", run, base="http://tracking.example:8080/") == (
        f"http://tracking.example:8080/#/experiments/4/runs/{run}"
    )
