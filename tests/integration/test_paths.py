"""Relative paths resolve against the folder `python -m tune` was launched from, even when
Hydra changes the working directory (`hydra.job.chdir=True`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY

pytestmark = pytest.mark.slow


def launch(cwd: Path, prefix: str) -> str:
    """One-trial sweep from `cwd`, every path relative and starting with `prefix`."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "tune", *TINY, "tuner.options.max_trials=1", "hydra.job.chdir=True"),
            *(f"data.root={prefix}data/shapes", f"tracking.uri=sqlite:///{prefix}store/mlflow.db"),
            *(f"tracking.artifact_location={prefix}store/artifacts", "hydra.run.dir=calls/${now:%H-%M-%S-%f}"),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_runs_from_two_folders_with_chdir_share_one_store_and_one_data_set(tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir(), elsewhere.mkdir()
    launch(project, "")
    launch(elsewhere, "../project/")
    client = MlflowClient(f"sqlite:///{project}/store/mlflow.db")
    sweeps = client.search_runs([client.get_experiment_by_name("shapes").experiment_id], "tags.`tune.role` = 'sweep'")
    assert len(sweeps) == 2 and all(s.info.status == "FINISHED" for s in sweeps)
    assert {s.data.params["data.root"] for s in sweeps} == {str(project / "data" / "shapes")}
    assert {s.data.metrics["train_images"] for s in sweeps} == {30.0}
    for sweep in sweeps:
        assert sweep.info.artifact_uri.startswith((project / "store" / "artifacts").as_uri())
    # Nothing was written relative to Hydra's run folders, nor a second store or data set.
    assert not list(tmp_path.glob("**/calls/*/store")) and not list(tmp_path.glob("**/calls/*/data"))
    assert not (elsewhere / "store").exists() and not (elsewhere / "data").exists()
