"""`mlflow server` on a throwaway PostgreSQL store, and the launcher's server, chief and workers wired together.

The chief and workers here are stand-ins that talk to the tracking server over MLflow's
REST API, so the test checks the launcher's wiring (server, store, environment, arguments,
exit status), not a sweep.
"""

from __future__ import annotations

import io
import os
import sqlite3
import sys
import textwrap

import psycopg
import pytest
import requests

from tune.cli.launch import launch
from tune.launcher.resources import free_port
from tune.launcher.server import server_command, server_store, wait_until_ready
from tune.launcher.supervisor import ChildSpec, Role, Supervisor

pytestmark = pytest.mark.slow

STAND_IN = textwrap.dedent(
    """
    import json, os, sys, time, urllib.error, urllib.request

    url, me = os.environ["MLFLOW_TRACKING_URI"], os.environ["KERASTUNER_TUNER_ID"]

    def call(path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    print("argv", *sys.argv[1:])
    print("oracle", os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"])
    if me == "chief":  # creates the experiment, waits for one run a worker
        experiment = call("experiments/create", {"name": "launch"})["experiment_id"]
        while len(call("runs/search", {"experiment_ids": [experiment]}).get("runs", [])) < int(sys.argv[1]):
            time.sleep(0.2)
        print("search over")
    else:  # one run named after its tuner id
        while True:
            try:
                experiment = call("experiments/get-by-name?experiment_name=launch")["experiment"]["experiment_id"]
                break
            except urllib.error.HTTPError:
                time.sleep(0.2)
        call("runs/create", {"experiment_id": experiment, "run_name": me, "start_time": int(time.time() * 1000)})
    """
)


@pytest.fixture
def server(postgres_uri, tmp_path):
    """The launcher's own `mlflow server` command on the PostgreSQL store, stopped as the launcher stops it."""
    store = server_store(tmp_path, postgres_uri, str(tmp_path / "artifacts"))
    port, out = free_port(), io.StringIO()
    supervisor = Supervisor(out, grace=10.0)
    process = supervisor.start(ChildSpec("server", server_command(store, "127.0.0.1", port), os.environ, Role.SERVICE))
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_ready(url, lambda: process.process.poll() is None):
            pytest.fail(f"mlflow server on {postgres_uri} did not answer on /health:\n{out.getvalue()[-3000:]}")
        yield url
    finally:
        supervisor.stop_all()


def _post(url: str, path: str, body: dict) -> dict:
    response = requests.post(f"{url}/api/2.0/mlflow/{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def test_mlflow_server_records_runs_in_postgresql(server, postgres_uri):
    experiment = _post(server, "experiments/create", {"name": "on-postgres"})["experiment_id"]
    run = _post(server, "runs/create", {"experiment_id": experiment, "run_name": "one"})["run"]["info"]["run_id"]
    _post(server, "runs/log-parameter", {"run_id": run, "key": "learning_rate", "value": "0.01"})
    _post(server, "runs/log-metric", {"run_id": run, "key": "val_accuracy", "value": 0.75, "timestamp": 0, "step": 2})
    read = requests.get(f"{server}/api/2.0/mlflow/runs/get", params={"run_id": run}, timeout=30).json()["run"]
    assert read["data"]["params"] == [{"key": "learning_rate", "value": "0.01"}]
    assert [(m["key"], m["value"], m["step"]) for m in read["data"]["metrics"]] == [("val_accuracy", 0.75, 2)]
    with psycopg.connect(postgres_uri) as connection:
        row = connection.execute("SELECT name FROM runs WHERE run_uuid = %s", (run,)).fetchone()
    assert row == ("one",)  # the record is in PostgreSQL, not a file beside the server


def _read(backend: str, postgres_uri: str, root, query: str) -> list:
    """The rows `query` finds in the store's database itself (the server is gone), sorted."""
    if backend == "postgres":
        with psycopg.connect(postgres_uri) as connection:
            return sorted(connection.execute(query))
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as connection:
        return sorted(connection.execute(query))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_launch_runs_server_chief_and_workers_and_returns_the_chiefs_status(backend, request, tmp_path):
    postgres_uri = request.getfixturevalue("postgres_uri") if backend == "postgres" else None
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    out = io.StringIO()
    command = [sys.executable, str(script)]
    status = launch(2, ["2", "seed=7"], root=tmp_path, backend_store_uri=postgres_uri, command=command, out=out)
    lines = out.getvalue().splitlines()
    assert status == 0, "\n".join(lines[-40:])
    runs = "SELECT r.name FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id WHERE e.name = 'launch'"
    assert _read(backend, postgres_uri, tmp_path, runs) == [("tuner0",), ("tuner1",)]
    [(location,)] = _read(
        backend, postgres_uri, tmp_path, "SELECT artifact_location FROM experiments WHERE name = 'launch'"
    )
    assert location.startswith((tmp_path / "mlruns" / "artifacts").as_uri() + "/")  # a real place, not the server's
    for name in ("chief", "worker0", "worker1"):
        argv = next(line for line in lines if line.startswith(f"[{name}] argv"))
        assert argv.startswith(f"[{name}] argv 2 seed=7 hydra.run.dir=") and argv.endswith(f"/{name}")
    oracles = {line.split("] ", 1)[1] for line in lines if "] oracle 127.0.0.1 " in line}
    assert len(oracles) == 1  # one oracle address for all
    port = oracles.pop().rsplit(" ", 1)[1]
    assert any(line.startswith(f"[launch] oracle at 127.0.0.1:{port}; chief: ") for line in lines)
    assert "[chief] search over" in lines
    assert lines[-1].startswith("[launch] done: chief exited with status 0; exit status 0.")
    assert (postgres_uri or f"sqlite:///{tmp_path}/mlruns/mlflow.db") in lines[-1]
