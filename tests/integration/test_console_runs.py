"""The console as a user sees it: a multirun of tiny sweeps, TensorFlow's start-up lines, and
what a failed call leaves under experiments/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tune.cli.startup import STARTUP_LINES

pytestmark = pytest.mark.slow


def command(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "TUNE_VERBOSE")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def tune_errors(done: subprocess.CompletedProcess) -> list:
    return [line for line in done.stderr.splitlines() if line.startswith("tune: error:")]


def test_a_multirun_runs_each_job_as_its_own_sweep_and_a_failed_job_does_not_stop_the_next(tmp_path):
    jobs = "search.learning_rate.value=100000.0,0.01"  # job 0: every trial fails (NaN); job 1: fine
    done = command(tmp_path, sys.executable, "-m", "tune", "-m", "debug=tiny", "tuner.options.max_trials=1", jobs)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = tune_errors(done)
    assert errors[0].startswith("tune: error: no trial completed (1 FAILED)"), done.stderr[-3000:]
    failed = "#0 (debug=tiny tuner.options.max_trials=1 search.learning_rate.value=100000.0)"
    assert errors[-1] == f"tune: error: 1 of 2 jobs failed: {failed}"
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment_id = client.get_experiment_by_name("shapes").experiment_id
    sweeps = client.search_runs([experiment_id], "tags.`tune.role` = 'sweep'", order_by=["attributes.start_time"])
    assert [s.info.status for s in sweeps] == ["FAILED", "FINISHED"]
    assert ["search.learning_rate.value=0.01" in s.data.tags["tune.overrides"] for s in sweeps] == [False, True]
    assert [v.run_id for v in client.search_model_versions()] == [sweeps[1].info.run_id]
    assert len(list((tmp_path / "experiments" / "shapes" / "tuner").iterdir())) == 2  # a tuner project each
    (folder,) = (tmp_path / "experiments" / "shapes").glob("multirun-*")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1"]  # both recorded a run
    assert "tune: error: no trial completed" in (folder / "0" / "tune.log").read_text()
    address = f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{sweeps[1].info.run_id}"
    assert re.search(rf"then open {re.escape(address)}$", done.stdout, flags=re.M), done.stdout[-2000:]


def test_startup_lines_stay_off_the_console_unless_verbose_and_a_failed_call_leaves_no_folder(tmp_path):
    argv = [sys.executable, "-m", "tune", "experiment=quickstart", "model.head.dropout=1.5"]
    for verbose in (False, True):
        done = command(tmp_path, *argv, *(["--verbose"] if verbose else []))
        assert done.returncode == 2, done.stderr[-2000:]
        assert tune_errors(done) == ["tune: error: model.head.dropout=1.5; expected a number in [0, 1)"]
        shown = [part for part in STARTUP_LINES if part in done.stderr]
        assert bool(shown) == verbose, done.stderr[-2000:]
        assert not (tmp_path / "experiments").exists()  # Hydra's dated folder removed, and its empty parents
