"""`python -m tune.launch` running a real distributed sweep on a throwaway PostgreSQL store.

One launch: the launcher's `mlflow server` on PostgreSQL, a chief and two workers on tiny
generated data; worker 0 is SIGKILLed in the middle of a trial. The launcher restarts it
under the same tuner id, the trial runs again, and the sweep finishes. The record is then
read through MLflow's REST API, from a second `mlflow server` on the same database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import pytest
import requests

import tune
from conftest import TINY
from tune.launcher.resources import free_port
from tune.launcher.server import server_command, server_store, wait_until_ready

pytestmark = pytest.mark.slow
TRIALS = 4
NAME = "launched"
DEADLINE = 900  # seconds the whole launch may take on a busy 2-core machine


def _worker_pid(launcher: int, tuner_id: str) -> Optional[int]:
    """The pid of the launcher's child `python -m tune` running as `tuner_id`, from its environment."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):  # gone, or not ours to read
            continue
        ours = parent == launcher and f"KERASTUNER_TUNER_ID={tuner_id}".encode() in environ
        if ours and argv[1:3] == [b"-m", b"tune"]:
            return int(entry.name)
    return None


def _api(url: str, path: str, body: dict) -> dict:
    response = requests.post(f"{url}/api/2.0/mlflow/{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def _open_trial_run(url: str, tuner_id: str) -> bool:
    """Whether `tuner_id` has a trial run open (RUNNING) on the launcher's server at `url`."""
    try:
        experiment = requests.get(
            f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": NAME}, timeout=5
        )
        if not experiment.ok:
            return False
        found = _api(
            url,
            "runs/search",
            {
                "experiment_ids": [experiment.json()["experiment"]["experiment_id"]],
                "filter": f"tags.`tune.tuner_id` = '{tuner_id}' and attributes.status = 'RUNNING'",
            },
        )
    except requests.RequestException:  # the server is starting or stopping
        return False
    return bool(found.get("runs"))


def test_a_launch_on_postgresql_survives_a_killed_worker_and_records_every_trial_once(postgres_uri, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    overrides = [*TINY, f"tuner.options.max_trials={TRIALS}", f"tracking.experiment_name={NAME}"]
    overrides.append(f"tracking.registered_model_name={NAME}-classifier")
    source = str(Path(tune.__file__).resolve().parents[1])  # the processes run the tune under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "tune.launch", "workers=2", "--backend-store-uri", postgres_uri]
    command += ["--port", str(port), "--artifacts", str(tmp_path / "artifacts"), *overrides]
    log = tmp_path / "launch.log"
    with open(log, "w") as out:
        launcher = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + DEADLINE
        while not _open_trial_run(url, "tuner0"):
            assert launcher.poll() is None, f"the launch ended before worker 0 ran a trial:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < end, "worker 0 opened no trial run"
            time.sleep(1)
        time.sleep(2)  # into the trial
        pid = _worker_pid(launcher.pid, "tuner0")
        assert pid is not None, "no process runs as tuner0"
        os.kill(pid, signal.SIGKILL)
        code = launcher.wait(timeout=max(end - time.monotonic(), 1))
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)  # the launcher stops what it started
            launcher.wait(timeout=120)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "[launch] worker0 exited with" in output and "restarting it" in output, output[-3000:]

    # the record, through the REST API of a fresh server on the same database
    store = server_store(tmp_path, postgres_uri, str(tmp_path / "artifacts"))
    reader_port = free_port()
    reader = subprocess.Popen(
        server_command(store, "127.0.0.1", reader_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    reader_url = f"http://127.0.0.1:{reader_port}"
    try:
        assert wait_until_ready(reader_url, lambda: reader.poll() is None)
        experiment = requests.get(
            f"{reader_url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": NAME}, timeout=30
        ).json()["experiment"]["experiment_id"]
        runs = _api(reader_url, "runs/search", {"experiment_ids": [experiment], "max_results": 1000})["runs"]
        model = f"{NAME}-classifier"
        versions = requests.get(
            f"{reader_url}/api/2.0/mlflow/model-versions/search", params={"filter": f"name='{model}'"}, timeout=30
        ).json()["model_versions"]
        alias = requests.get(
            f"{reader_url}/api/2.0/mlflow/registered-models/alias",
            params={"name": model, "alias": "challenger"},
            timeout=30,
        ).json()["model_version"]
    finally:
        reader.terminate()
        reader.wait(timeout=60)

    tags = lambda run: {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}  # noqa: E731
    status = lambda run: run["info"]["status"]  # noqa: E731
    assert [run["info"]["run_name"] for run in runs if status(run) == "RUNNING"] == []
    (sweep,) = [run for run in runs if tags(run).get("tune.role") == "sweep"]
    assert status(sweep) == "FINISHED"
    trials = [run for run in runs if tags(run).get("tune.role") == "trial"]
    assert {tags(run)["mlflow.parentRunId"] for run in trials} == {sweep["info"]["run_id"]}
    finished = Counter(tags(run)["tune.trial_id"] for run in trials if status(run) == "FINISHED")
    assert finished == {str(i): 1 for i in range(TRIALS)}  # every trial once: none lost, none twice
    (killed,) = [run for run in trials if status(run) == "KILLED"]
    assert tags(killed)["tune.tuner_id"] == "tuner0"
    assert len(versions) == 1 and alias["version"] == versions[0]["version"]
