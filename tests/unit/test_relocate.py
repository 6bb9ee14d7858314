"""A project folder moved or copied elsewhere: its SQLite store reads and writes the artifacts
beside it, and nothing is written to the old place (a registered model, no sweep)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, make_settings
from registered import colour_model, register
from tune.tracking.registry import class_names, load_classifier, open_registry
from tune.tracking.relocate import follow_moved_store
from tune.tracking.store import open_store

NAMES = ["red circle", "green square", "blue triangle"]


def _locations(root: Path) -> list:
    """Every artifact location the store under `root` records, as text."""
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as db:
        rows = db.execute(
            "SELECT artifact_location FROM experiments WHERE name != 'Default' UNION ALL "
            "SELECT artifact_uri FROM runs UNION ALL SELECT artifact_location FROM logged_models UNION ALL "
            "SELECT storage_location FROM model_versions"
        )
        return [row[0] for row in rows]


@pytest.fixture
def project(tmp_path) -> Path:
    """`tmp_path/old`: a store with one registered version of a 3-class model."""
    root = tmp_path / "old"
    root.mkdir()
    settings = make_settings(root, TINY)
    register(settings.tracking, colour_model(NAMES), NAMES)
    assert all(str(root) in location for location in _locations(root))
    return root


def test_a_moved_store_loads_its_models_from_the_new_place(project, tmp_path):
    moved = tmp_path / "new"
    project.rename(moved)
    uri = f"sqlite:///{moved}/mlruns/mlflow.db"
    client = open_registry(uri, "")
    assert all(str(moved) in location and str(project) not in location for location in _locations(moved))
    assert class_names("models:/shapes-classifier/1", client) == NAMES
    assert load_classifier("models:/shapes-classifier/1").output_shape == (None, 3)
    assert not project.exists()


def test_a_copied_store_follows_its_copy_and_leaves_the_original_alone(project, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    before = _locations(project)
    moves = follow_moved_store(f"sqlite:///{copy}/mlruns/mlflow.db")
    assert moves == [((project / "mlruns/artifacts").as_uri(), (copy / "mlruns/artifacts").as_uri())]
    assert _locations(project) == before
    assert _locations(copy) == [location.replace(str(project), str(copy)) for location in before]
    assert follow_moved_store(f"sqlite:///{copy}/mlruns/mlflow.db") == []  # once only


def test_a_new_run_in_a_moved_store_writes_beside_it_never_in_the_old_folder(project, tmp_path):
    moved = tmp_path / "new"
    project.rename(moved)
    settings = make_settings(moved, TINY)
    experiment_id = open_store(settings.tracking.uri, settings.tracking.experiment_name, None)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_text("x", "note.txt")
    assert (moved / "mlruns" / "artifacts" / run.info.run_id / "artifacts" / "note.txt").is_file()
    assert not project.exists()


def test_a_root_of_the_users_choosing_is_left_alone(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    settings = make_settings(root, [*TINY, f"tracking.artifact_location={tmp_path}/shared/artifacts"])
    register(settings.tracking, colour_model(NAMES), NAMES)
    (root / "mlruns" / "artifacts").mkdir()  # an unrelated folder where the default would be
    before = _locations(root)
    assert follow_moved_store(settings.tracking.uri) == []
    assert _locations(root) == before and str(tmp_path / "shared") in before[0]
    assert MlflowClient(settings.tracking.uri).get_model_version("shapes-classifier", "1")
