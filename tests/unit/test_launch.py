"""The launcher's own logic with stand-in children (`python -c` scripts): no tracking server, no sweep."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from tune.cli.launch import _signals_to, launch, masked, parse_args
from tune.errors import ConfigError
from tune.launcher.processes import placement, process_specs
from tune.launcher.resources import process_envs, visible_gpus
from tune.launcher.server import server_command, server_store
from tune.launcher.supervisor import ChildSpec, Role, Supervisor

SLEEP = "import time; time.sleep(60)"


def spec(name: str, code: str, role: Role = Role.WORKER, **env) -> ChildSpec:
    return ChildSpec(name, [sys.executable, "-c", code], {**os.environ, **env}, role)


def run(*specs: ChildSpec, **options):
    """Start `specs`, watch them to the end; (outcome, the output's lines, seconds it took)."""
    out = io.StringIO()
    supervisor = Supervisor(out, **{"grace": 5.0, **options})
    start = time.monotonic()
    for child in specs:
        supervisor.start(child)
    outcome = supervisor.watch()
    return outcome, out.getvalue().splitlines(), time.monotonic() - start


def test_each_line_of_stdout_and_stderr_comes_out_whole_under_its_process_name():
    chief = spec("chief", "import sys, time; print('a'); time.sleep(0.3); print('b', file=sys.stderr)", Role.MAIN)
    worker = spec("worker0", "print('w1'); print('w2')")
    outcome, lines, _ = run(chief, worker)
    assert outcome.status == 0
    assert [line for line in lines if line.startswith("[chief]")] == ["[chief] a", "[chief] b"]
    assert [line for line in lines if line.startswith("[worker0]")] == ["[worker0] w1", "[worker0] w2"]
    assert lines[-1].startswith("[launch] chief exited with status 0")


def test_the_chiefs_exit_stops_the_others_and_its_status_is_the_runs():
    chief = spec("chief", "import time, sys; time.sleep(0.5); sys.exit(3)", Role.MAIN)
    outcome, lines, seconds = run(chief, spec("worker0", SLEEP), spec("server", SLEEP, Role.SERVICE))
    assert outcome.status == 3
    assert outcome.statuses == {"chief": 3, "worker0": -signal.SIGTERM, "server": -signal.SIGTERM}
    assert seconds < 10
    assert lines.index("[launch] stopping worker0") < lines.index("[launch] stopping server")  # the server last


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    ready = tmp_path / "ready"
    stubborn = "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    stubborn += "open(os.environ['READY'], 'w').close(); time.sleep(60)"
    chief = "import os, time\nwhile not os.path.exists(os.environ['READY']):\n    time.sleep(0.05)\n"
    workers = (spec("chief", chief, Role.MAIN, READY=str(ready)), spec("worker0", stubborn, READY=str(ready)))
    outcome, lines, seconds = run(*workers, grace=0.5)
    assert outcome.statuses["worker0"] == -signal.SIGKILL
    assert "[launch] worker0 still running after 0.5 s; killing it" in lines
    assert seconds < 10


def test_a_second_interrupt_while_stopping_kills_at_once(tmp_path):
    ready = tmp_path / "ready"
    stubborn = "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    stubborn += "open(os.environ['READY'], 'w').close(); time.sleep(60)"
    supervisor = Supervisor(io.StringIO(), grace=60.0)
    supervisor.start(spec("chief", stubborn, Role.MAIN, READY=str(ready)))
    while not ready.exists():
        time.sleep(0.05)
    supervisor.interrupt(signal.SIGINT)
    threading.Timer(1.0, supervisor.interrupt, (signal.SIGINT,)).start()  # Ctrl-C again, while stopping
    start = time.monotonic()
    outcome = supervisor.watch()
    assert time.monotonic() - start < 10  # not the 60 s grace period
    assert outcome.status == 130 and outcome.statuses == {"chief": -signal.SIGKILL}
    assert "[launch] chief interrupted again; killing it" in supervisor.out.getvalue()


def test_the_chief_killed_by_a_signal_exits_as_a_shell_reports_it():
    chief = spec("chief", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", Role.MAIN)
    outcome, lines, _ = run(chief, spec("worker0", SLEEP))
    assert outcome.status == 128 + signal.SIGKILL
    assert "[launch] chief exited with signal SIGKILL; stopping the others" in lines


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_to_the_launcher_stops_everything(signum):
    out = io.StringIO()
    supervisor = Supervisor(out, grace=5.0)
    for child in (spec("server", SLEEP, Role.SERVICE), spec("chief", SLEEP, Role.MAIN), spec("worker0", SLEEP)):
        supervisor.start(child)
    before = signal.getsignal(signum)
    with _signals_to(supervisor):
        threading.Timer(0.5, os.kill, (os.getpid(), signum)).start()  # as Ctrl-C or `kill` would
        outcome = supervisor.watch()
    assert signal.getsignal(signum) == before  # the launcher's handlers are gone again
    assert outcome.status == 128 + signum
    assert set(outcome.statuses.values()) == {-signal.SIGTERM}
    assert f"[launch] stopping on {signal.Signals(signum).name}" in out.getvalue()


def test_a_killed_worker_is_restarted_with_the_same_tuner_id(tmp_path):
    record = tmp_path / "starts.txt"
    worker = (
        "import os, signal; path = os.environ['RECORD']; "
        "starts = open(path).read().split() if os.path.exists(path) else []; "
        "open(path, 'a').write(os.environ['KERASTUNER_TUNER_ID'] + '\\n'); "
        "len(starts) == 0 and os.kill(os.getpid(), signal.SIGKILL)"  # dies in its first trial
    )
    chief = (  # the search ends once the worker has run twice
        "import os, time\n"
        "while not os.path.exists(os.environ['RECORD']) or len(open(os.environ['RECORD']).read().split()) < 2:\n"
        "    time.sleep(0.05)\n"
    )
    ids = dict(RECORD=str(record), KERASTUNER_TUNER_ID="tuner0")
    outcome, lines, _ = run(spec("chief", chief, Role.MAIN, RECORD=str(record)), spec("worker0", worker, **ids))
    assert outcome.status == 0
    assert record.read_text().split() == ["tuner0", "tuner0"]
    assert "[launch] worker0 exited with signal SIGKILL; restarting it (restart 1 of 3)" in lines


def test_a_worker_that_keeps_failing_ends_the_run_after_its_restarts(tmp_path):
    record = tmp_path / "starts.txt"
    worker = "import os, sys; open(os.environ['RECORD'], 'a').write('x'); sys.exit(1)"
    outcome, lines, _ = run(
        spec("chief", SLEEP, Role.MAIN), spec("worker0", worker, RECORD=str(record)), max_restarts=2
    )
    assert record.read_text() == "xxx"  # the first start and two restarts
    assert outcome.status == 1
    assert outcome.statuses["chief"] == -signal.SIGTERM
    assert "[launch] worker0 failed with status 1 after 2 restarts; stopping" in lines


def test_a_worker_that_finishes_is_not_restarted_and_the_chief_goes_on():
    chief = spec("chief", "import time; time.sleep(1); print('refit done')", Role.MAIN)
    outcome, lines, _ = run(chief, spec("worker0", "print('no more trials')"))
    assert outcome.status == 0
    assert "[chief] refit done" in lines
    assert not any("restarting" in line for line in lines)


def test_the_servers_death_stops_the_sweep_with_status_1():
    server = spec("server", "import sys, time; time.sleep(0.3); sys.exit(4)", Role.SERVICE)
    outcome, lines, _ = run(server, spec("chief", SLEEP, Role.MAIN), spec("worker0", SLEEP))
    assert outcome.status == 1
    assert outcome.statuses == {"server": 4, "chief": -signal.SIGTERM, "worker0": -signal.SIGTERM}
    assert "[launch] server died with status 4; stopping the others" in lines


def test_each_process_gets_its_tuner_id_the_oracle_and_the_tracking_server():
    envs = process_envs(3, 4321, "http://127.0.0.1:5555", [], 8, {"PATH": "/bin"})
    assert list(envs) == ["chief", "worker0", "worker1", "worker2"]
    assert [env["KERASTUNER_TUNER_ID"] for env in envs.values()] == ["chief", "tuner0", "tuner1", "tuner2"]
    for env in envs.values():
        assert env["KERASTUNER_ORACLE_IP"] == "127.0.0.1" and env["KERASTUNER_ORACLE_PORT"] == "4321"
        assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5555" and env["PATH"] == "/bin"
    assert [envs[name]["TF_NUM_INTRAOP_THREADS"] for name in envs] == ["8", "2", "2", "2"]  # 8 cores, 3 workers
    assert envs["worker0"]["OMP_NUM_THREADS"] == "2" and envs["worker0"]["TF_NUM_INTEROP_THREADS"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in envs["worker0"]
    specs = [ChildSpec(name, [], env, Role.WORKER) for name, env in envs.items()]
    assert (
        placement(specs)
        == "oracle at 127.0.0.1:4321; chief: 8 threads, worker0: 2 threads, worker1: 2 threads, worker2: 2 threads"
    )


def test_gpus_go_one_a_worker_round_robin_and_user_thread_counts_are_kept():
    envs = process_envs(3, 1, "http://x", ["0", "1"], 8, {"TF_NUM_INTRAOP_THREADS": "1"})
    assert [env["CUDA_VISIBLE_DEVICES"] for env in envs.values()] == ["0", "0", "1", "0"]
    assert all(env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" for env in envs.values())
    specs = [ChildSpec(name, [], env, Role.WORKER) for name, env in envs.items()]
    assert placement(specs).endswith("chief: GPU 0, worker0: GPU 0, worker1: GPU 1, worker2: GPU 0")
    on_cpu = process_envs(2, 1, "http://x", [], 1, {"TF_NUM_INTRAOP_THREADS": "1"})
    assert on_cpu["worker1"]["TF_NUM_INTRAOP_THREADS"] == "1" and on_cpu["worker1"]["OMP_NUM_THREADS"] == "1"


def test_visible_gpus_from_cuda_visible_devices_or_nvidia_smi(tmp_path):
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: a)'\necho 'GPU 1: NVIDIA H100 (UUID: b)'\n")
    smi.chmod(0o755)
    assert visible_gpus({}, nvidia_smi=str(smi)) == ["0", "1"]
    assert visible_gpus({}, nvidia_smi=str(tmp_path / "missing")) == []


def test_chief_and_workers_run_the_same_overrides_each_in_its_own_hydra_folder(tmp_path):
    specs = process_specs(2, ["tune", "debug=tiny"], "http://127.0.0.1:5000", tmp_path, {})
    assert [(s.name, s.role) for s in specs] == [
        ("chief", Role.MAIN),
        ("worker0", Role.WORKER),
        ("worker1", Role.WORKER),
    ]
    assert all(s.command[:2] == ["tune", "debug=tiny"] and s.cwd == str(tmp_path) for s in specs)
    folders = [s.command[2] for s in specs]
    assert folders[0].startswith("hydra.run.dir=${paths.root_dir}/experiments/${tracking.experiment_name}/launch-")
    assert [folder.rsplit("/", 1)[1] for folder in folders] == ["chief", "worker0", "worker1"]
    assert placement(specs).startswith(f"oracle at 127.0.0.1:{specs[0].env['KERASTUNER_ORACLE_PORT']}; chief: ")
    mine = process_specs(1, ["tune", "hydra.run.dir=here"], "http://x", tmp_path, {})
    assert all(s.command == ["tune", "hydra.run.dir=here"] for s in mine)


def test_the_command_line_takes_workers_and_its_options_and_keeps_tunes_arguments_in_order():
    args, rest = parse_args(["workers=2", "--config-dir", "/c", "--grace", "3", "experiment=quickstart", "--verbose"])
    assert (args.workers, args.grace, args.max_restarts, args.backend_store_uri) == (2, 3.0, 3, None)
    assert rest == ["--config-dir", "/c", "experiment=quickstart", "--verbose"]


@pytest.mark.parametrize(
    "argv, says",
    [
        (["debug=tiny"], "expected workers=N once"),
        (["workers=0"], "expected workers=N once"),
        (["workers=two"], "expected workers=N once"),
        (["workers=2", "tracking.uri=http://x"], "use --backend-store-uri"),
        (["workers=2", "-m", "seed=0,1"], "launch once per sweep"),
    ],
)
def test_the_command_line_refuses_what_it_cannot_run(argv, says, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(argv)
    assert stop.value.code == 2
    assert says in capsys.readouterr().err


def test_the_default_store_is_tunes_own_layout_under_the_launch_folder(tmp_path):
    store = server_store(tmp_path)
    assert store.backend == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert store.artifacts == str(tmp_path / "mlruns" / "artifacts")
    postgres = server_store(tmp_path, "postgresql://tune@127.0.0.1:5432/mlflow", "shared/artifacts")
    assert postgres.backend == "postgresql://tune@127.0.0.1:5432/mlflow"
    assert postgres.artifacts == str(tmp_path / "shared" / "artifacts")
    assert server_store(tmp_path, "sqlite:///db/x.db", "s3://bucket/runs").artifacts == "s3://bucket/runs"
    assert server_store(tmp_path, "postgresql://h/db").artifacts == str(Path(tmp_path) / "mlruns" / "artifacts")
    command = server_command(store, "127.0.0.1", 5123)
    assert command[command.index("--backend-store-uri") + 1] == store.backend
    assert command[command.index("--default-artifact-root") + 1] == (tmp_path / "mlruns" / "artifacts").as_uri()
    assert "--no-serve-artifacts" in command  # the runs name the real place, readable without the server


def test_launch_in_process_refuses_fewer_than_one_worker(tmp_path):
    with pytest.raises(ConfigError, match=r"workers=0; expected a whole number >= 1"):
        launch(0, root=tmp_path)


def test_a_database_password_is_not_printed():
    assert masked("postgresql://tune:s3cret@db:5432/mlflow") == "postgresql://tune:***@db:5432/mlflow"
    assert masked("postgresql://tune@db:5432/mlflow") == "postgresql://tune@db:5432/mlflow"
    assert masked("sqlite:////x/mlruns/mlflow.db") == "sqlite:////x/mlruns/mlflow.db"
