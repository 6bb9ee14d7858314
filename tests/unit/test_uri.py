"""Tracking URIs and paths made absolute against the launch folder, and stores MLflow cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY, make_settings
from tune.config.checks import check_settings
from tune.errors import ConfigError
from tune.tracking.uri import (
    Store,
    absolute_uri,
    default_artifact_location,
    is_server,
    registry_problem,
    resolve_store,
    sqlite_path,
    ui_address,
)

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


def test_the_store_is_the_given_one_then_the_environment_then_the_launch_folder_and_says_which():
    env = {"MLFLOW_TRACKING_URI": "http://e:2"}
    assert resolve_store("http://h:1", "--tracking-uri", env, BASE) == Store("http://h:1", "--tracking-uri")
    assert resolve_store(None, "tracking.uri", env, BASE) == Store("http://e:2", "MLFLOW_TRACKING_URI")
    relative = resolve_store(None, "x", {"MLFLOW_TRACKING_URI": "sqlite:///s/m.db"}, BASE)
    assert relative.uri == "sqlite:////home/ana/project/s/m.db"
    default = resolve_store(None, "x", {"MLFLOW_TRACKING_URI": ""}, BASE)
    assert default == Store("sqlite:////home/ana/project/mlruns/mlflow.db", "default")
    assert default.line() == "tracking store: sqlite:////home/ana/project/mlruns/mlflow.db (from default)"
    assert resolve_store(None, "x", {}, BASE, Path("/r")).uri == "sqlite:////r/mlruns/mlflow.db"


def test_artifacts_follow_a_sqlite_store_and_a_server_places_its_own():
    assert default_artifact_location("sqlite:////data/runs/x.db", BASE) == "/data/runs/artifacts"
    assert default_artifact_location("http://h:5000", BASE) is None
    assert default_artifact_location("postgresql://u@h/db", BASE) == "/home/ana/project/mlruns/artifacts"


def test_a_sweep_and_promote_obey_mlflow_tracking_uri_unless_tracking_uri_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere/m.db")
    settings = make_settings(tmp_path, TINY)
    assert settings.store() == Store(f"sqlite:///{tmp_path}/elsewhere/m.db", "MLFLOW_TRACKING_URI")
    assert settings.tracking.artifact_location == str(tmp_path / "elsewhere" / "artifacts")
    given = make_settings(tmp_path, [*TINY, "tracking.uri=sqlite:///mine.db"])
    assert given.store() == Store(f"sqlite:///{tmp_path}/mine.db", "tracking.uri")
    assert given.tracking.artifact_location == str(tmp_path / "artifacts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "./runs")
    with pytest.raises(ConfigError, match=r"tracking.uri='.*/runs' \(from MLFLOW_TRACKING_URI\): a file store"):
        check_settings(make_settings(tmp_path, TINY))


def test_without_either_the_store_and_its_artifacts_are_under_the_root_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = make_settings(tmp_path, TINY)
    assert settings.store() == Store(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "default")
    assert settings.tracking.artifact_location == str(tmp_path / "mlruns" / "artifacts")
    server = make_settings(tmp_path, [*TINY, "tracking.uri=http://127.0.0.1:5000"])
    assert server.tracking.artifact_location is None


def test_ui_address_points_at_the_run_page():
    run = "0123456789abcdef0123456789abcdef"
    assert ui_address("4", run) == f"http://127.0.0.1:5000/#/experiments/4/runs/{run}"
    assert ui_address("4", run, base="http://tracking.example:8080/") == (
        f"http://tracking.example:8080/#/experiments/4/runs/{run}"
    )
