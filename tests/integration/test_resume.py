"""A sweep killed mid-trial resumes with the same command; a changed search never reuses trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY

pytestmark = pytest.mark.slow
TRIALS = 3


def command(root: Path, *extra: str) -> list:
    """`python -m tune` on the tiny world, three trials, each call its own Hydra folder."""
    return [
        *(sys.executable, "-m", "tune", *TINY, f"tuner.options.max_trials={TRIALS}"),
        *(f"hydra.run.dir={root}/calls/${{now:%H-%M-%S-%f}}", *extra),
    ]


def run_until(root: Path, line: str, *extra: str) -> str:
    """Start a sweep and SIGKILL it as soon as it prints `line`; return what it printed."""
    process = subprocess.Popen(
        command(root, *extra), cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = []
    for text in process.stdout:
        seen.append(text)
        if line in text:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


def run(root: Path, *extra: str) -> str:
    done = subprocess.run(command(root, *extra), cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def sweeps_and_trials(root: Path):
    client = MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("shapes")
    sweeps = client.search_runs([experiment.experiment_id], "tags.`tune.role` = 'sweep'")
    trials = client.search_runs([experiment.experiment_id], "tags.`tune.role` = 'trial'")
    return client, sweeps, trials


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory):
    """Kill a sweep during its second trial, then rerun the same command."""
    root = tmp_path_factory.mktemp("resume")
    before = run_until(root, f"trial 1 (2/{TRIALS}) started")
    _, sweeps, trials = sweeps_and_trials(root)
    assert [r.info.status for r in sweeps] == ["RUNNING"] and len(trials) == 2  # what SIGKILL leaves
    after = run(root)
    return dict(root=root, before=before, after=after)


def test_a_killed_sweep_resumes_in_the_same_parent_without_redoing_ended_trials(killed_then_resumed):
    client, sweeps, trials = sweeps_and_trials(killed_then_resumed["root"])
    assert len(sweeps) == 1 and sweeps[0].info.status == "FINISHED"
    assert sweeps[0].data.tags["tune.resumed"] == "1"
    by_status = sorted((r.data.tags["tune.trial_id"], r.info.status) for r in trials)
    assert by_status == [("0", "FINISHED"), ("1", "FINISHED"), ("1", "KILLED"), ("2", "FINISHED")]
    killed = next(r for r in trials if r.info.status == "KILLED")
    assert "interrupted" in killed.data.tags["tune.error"]
    assert "trial 0 (1/3) started" not in killed_then_resumed["after"]  # ended trials are not run again
    assert "resuming sweep run" in killed_then_resumed["after"]
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == sweeps[0].info.run_id
        if run.info.status == "FINISHED":
            assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [0, 1]
    versions = client.search_model_versions("name = 'shapes-classifier'")
    assert len(versions) == 1 and sweeps[0].data.tags["tune.model_version"] == str(versions[0].version)
    # trials trained on cached activations; the rerun reused the entries the killed run filled
    assert sweeps[0].data.tags["tune.activation_cache"].startswith("on")
    assert "activation cache: filled" in killed_then_resumed["before"]
    assert "activation cache: reused" in killed_then_resumed["after"]
    assert "activation cache: filled" not in killed_then_resumed["after"]
    assert sweeps[0].data.metrics["activation_cache_reused"] >= 1


def test_rerunning_a_finished_sweep_says_so_and_runs_nothing(killed_then_resumed):
    root = killed_then_resumed["root"]
    _, _, trials_before = sweeps_and_trials(root)
    out = run(root)
    assert "this sweep had already finished (3 of 3 trials completed); nothing was run" in out
    assert "started:" not in out
    _, sweeps, trials = sweeps_and_trials(root)
    assert len(sweeps) == 1 and len(trials) == len(trials_before)


def test_a_changed_search_gets_a_new_project_and_reuses_no_trial(killed_then_resumed):
    root = killed_then_resumed["root"]
    out = run(root, "search.learning_rate.max=0.01")
    assert "search.learning_rate.max: 0.03 -> 0.01" in out
    assert f"trial 0 (1/{TRIALS}) started" in out
    _, sweeps, trials = sweeps_and_trials(root)
    assert len(sweeps) == 2 and all(s.info.status == "FINISHED" for s in sweeps)
    assert len({s.data.tags["tune.project"] for s in sweeps}) == 2
    newest = max(sweeps, key=lambda s: s.info.start_time).info.run_id
    assert sum(t.data.tags["mlflow.parentRunId"] == newest for t in trials) == TRIALS
