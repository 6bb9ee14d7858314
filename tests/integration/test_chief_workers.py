"""One search run by a chief and two workers (keras-tuner's chief/worker mode) on loopback,
recorded in a real `mlflow server`: every trial once, in one sweep run, one model registered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
from mlflow.tracking import MlflowClient

import tune
from conftest import TINY, free_port

pytestmark = pytest.mark.slow
TRIALS = 4
DEADLINE = 480  # seconds a whole search may take on a 2-core machine


@pytest.fixture(scope="module")
def server(tracking_server):
    """The module's `mlflow server` (see `tracking_server` in conftest)."""
    return tracking_server


class Search:
    """A chief and its workers as `python -m tune` subprocesses in one folder, logs in `<id>.log`."""

    def __init__(self, root: Path, server: str, name: str, extra: Sequence[str] = ()):
        self.root, self.name, self.port, self.extra = root, name, free_port(), list(extra)
        source = str(Path(tune.__file__).resolve().parents[1])  # the processes run the tune under test
        path = os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])])
        self.env = {**os.environ, "PYTHONPATH": path, "MLFLOW_TRACKING_URI": server}
        self.env.update(KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(self.port))
        self.processes: Dict[str, subprocess.Popen] = {}
        self.started: List[subprocess.Popen] = []

    def start(self, tuner_id: str) -> subprocess.Popen:
        overrides = [*TINY, f"tuner.options.max_trials={TRIALS}", f"tracking.experiment_name={self.name}"]
        overrides.append(f"tracking.registered_model_name={self.name}-classifier")
        overrides += self.extra
        with open(self.log(tuner_id), "a") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tune", *overrides],
                cwd=self.root,
                env={**self.env, "KERASTUNER_TUNER_ID": tuner_id},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes[tuner_id] = process
        self.started.append(process)
        return process

    def log(self, tuner_id: str) -> Path:
        return self.root / f"{tuner_id}.log"

    def wait_for(self, tuner_id: str, text: str, timeout: float = DEADLINE) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log(tuner_id).read_text():
                return
            if self.processes[tuner_id].poll() is not None:
                pytest.fail(f"{tuner_id} exited before '{text}':\n{self.log(tuner_id).read_text()[-3000:]}")
            time.sleep(0.5)
        pytest.fail(f"{tuner_id} did not log '{text}' within {timeout} s")

    def finish(self, expected: Optional[Dict[str, int]] = None) -> None:
        """Wait for every process; each must exit with its `expected` status (default 0)."""
        end = time.monotonic() + DEADLINE
        for tuner_id, process in self.processes.items():
            try:
                code = process.wait(timeout=max(end - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{tuner_id} still running after {DEADLINE} s:\n{self.log(tuner_id).read_text()[-3000:]}")
            wanted = (expected or {}).get(tuner_id, 0)
            assert code == wanted, f"{tuner_id} exited {code}:\n{self.log(tuner_id).read_text()[-3000:]}"

    def stop(self) -> None:
        """End every process this search started that is still running."""
        for process in self.started:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def check_accounting(server: str, name: str) -> list:
    """Every trial once COMPLETED under one FINISHED sweep run, nothing RUNNING, one version @challenger.

    Returns:
        Every trial run.
    """
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    (sweep,) = [r for r in runs if r.data.tags.get("tune.role") == "sweep"]
    assert sweep.info.status == "FINISHED"
    trials = [r for r in runs if r.data.tags.get("tune.role") == "trial"]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {sweep.info.run_id}
    finished = [r for r in trials if r.info.status == "FINISHED"]
    assert Counter(r.data.tags["tune.trial_id"] for r in finished) == {str(i): 1 for i in range(TRIALS)}
    assert {r.data.tags["tune.tuner_id"] for r in finished} == {"tuner0", "tuner1"}  # the chief trains none
    (version,) = client.search_model_versions(f"name='{name}-classifier'")
    assert client.get_model_version_by_alias(f"{name}-classifier", "challenger").version == version.version
    assert sweep.data.tags["tune.model_version"] == str(version.version)
    return trials


def test_a_chief_and_two_workers_run_every_trial_once_in_one_sweep_run(server, tmp_path):
    search = Search(tmp_path, server, "chief-workers")
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):  # together: the workers wait for the chief
            search.start(tuner_id)
        search.finish()
    finally:
        search.stop()
    trials = check_accounting(server, "chief-workers")
    assert len(trials) == TRIALS
    assert "registered: models:/chief-workers-classifier/1 (alias @challenger)" in search.log("chief").read_text()
    assert "worker tuner0 finished" in search.log("tuner0").read_text()


def test_a_worker_killed_mid_trial_and_restarted_runs_that_trial_again(server, tmp_path):
    search = Search(tmp_path, server, "killed-worker")
    try:
        search.start("chief")
        search.start("tuner1")
        killed = search.start("tuner0")
        search.wait_for("tuner0", "started: ")  # its trial run is open
        time.sleep(2)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        search.start("tuner0")  # the launcher's restart: the same tuner id
        search.finish()
    finally:
        search.stop()
    trials = check_accounting(server, "killed-worker")
    (stale,) = [r for r in trials if r.info.status == "KILLED"]
    assert stale.data.tags["tune.tuner_id"] == "tuner0"
    assert "interrupted: worker tuner0" in stale.data.tags["tune.error"]
    rerun = [r for r in trials if r.data.tags["tune.trial_id"] == stale.data.tags["tune.trial_id"]]
    assert sorted(r.info.status for r in rerun) == ["FINISHED", "KILLED"]
    assert "closed the runs it left open of trial(s)" in search.log("tuner0").read_text()


def test_failures_in_a_row_stop_the_workers_and_fail_the_sweep_instead_of_hanging_the_chief(server, tmp_path):
    failing = ["search.learning_rate.value=100000.0", "tuner.options.max_consecutive_failed_trials=2"]  # loss NaN
    search = Search(tmp_path, server, "failing", failing)
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            search.start(tuner_id)
        search.finish({"chief": 2})  # the workers are told to stop and exit 0; the chief reports the failure
    finally:
        search.stop()
    assert "2 trials failed in a row" in search.log("chief").read_text()
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    experiment = client.get_experiment_by_name("failing")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    (sweep,) = [r for r in runs if r.data.tags.get("tune.role") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("tune.role") == "trial"]
    assert sweep.info.status == "FAILED" and "RUNNING" not in {r.info.status for r in runs}
    assert len(trials) >= 2 and {r.info.status for r in trials} == {"FAILED"}
    assert client.search_model_versions("name='failing-classifier'") == []
