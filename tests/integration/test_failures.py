"""A failing trial is recorded FAILED with its reason and the search goes on, up to a limit."""

from __future__ import annotations

import contextlib
import os
import signal

import keras_tuner as kt
import pytest
from mlflow.tracking import MlflowClient

import tune.search.tuners
from conftest import TINY, make_settings
from tune import interrupts
from tune.errors import ConfigError, SearchFailedError
from tune.model.hypermodel import TransferHyperModel
from tune.search.sweep import run_sweep

pytestmark = pytest.mark.slow

# One value per dimension but the learning rate, so the trials differ only there.
FIXED = [
    "search.head_width.values=[16]",
    "search.momentum.values=[0.9]",
    "search.thawed_layers.value=1",
    "tuner.options.max_consecutive_failed_trials=2",
]


def trial_runs(settings):
    client = MlflowClient(settings.tracking.uri)
    experiment = client.get_experiment_by_name(settings.tracking.experiment_name)
    sweeps = client.search_runs([experiment.experiment_id], "tags.`tune.role` = 'sweep'")
    trials = client.search_runs([experiment.experiment_id], "tags.`tune.role` = 'trial'")
    return client, sweeps, trials


def test_a_nan_loss_fails_its_trial_at_once_and_it_never_becomes_the_best(tmp_path):
    settings = make_settings(tmp_path, [*TINY, *FIXED, "search.learning_rate.values=[0.003,1.0e12]"])
    result = run_sweep(settings)
    client, sweeps, trials = trial_runs(settings)
    failed = [t for t in trials if t.info.status == "FAILED"]
    assert len(trials) == 2 and len(failed) == 1 and sweeps[0].info.status == "FINISHED"
    assert failed[0].data.params["learning_rate"] == "1000000000000.0"
    assert "loss became" in failed[0].data.tags["tune.error"] and "batch" in failed[0].data.tags["tune.error"]
    assert len(client.get_metric_history(failed[0].info.run_id, "loss")) <= 1  # stopped in its first epoch
    assert "best_val_accuracy" not in failed[0].data.metrics and "tune.best" not in failed[0].data.tags
    assert result.best_values["learning_rate"] == 0.003
    by_rate = {r.values["learning_rate"]: r.status for r in result.records}
    assert by_rate == {0.003: "COMPLETED", 1.0e12: "FAILED"}
    failed_run = next(t for t in trials if t.info.status == "FAILED")
    assert failed_run.data.tags["tune.trial_id"] == next(r.trial_id for r in result.records if r.status == "FAILED")


def test_a_bug_that_fails_every_trial_stops_the_sweep_after_the_limit_showing_the_first_error(tmp_path, monkeypatch):
    calls = []

    def broken_fit(self, hp, model, *args, **kwargs):
        calls.append(hp.get("learning_rate"))
        raise ZeroDivisionError(f"division by zero in trial {len(calls)}")

    monkeypatch.setattr(TransferHyperModel, "fit", broken_fit)
    settings = make_settings(tmp_path, [*TINY, *FIXED, "tuner.options.max_trials=5"])
    message = r"2 trials failed in a row \(tuner.options.max_consecutive_failed_trials=2\)"
    with pytest.raises(SearchFailedError, match=message) as err:
        run_sweep(settings)
    assert "ZeroDivisionError: division by zero in trial 1" in str(err.value)  # the first, not the last
    assert len(calls) == 2
    _, sweeps, trials = trial_runs(settings)
    assert [s.info.status for s in sweeps] == ["FAILED"]
    assert sorted(t.info.status for t in trials) == ["FAILED", "FAILED"]
    assert all("ZeroDivisionError" in t.data.tags["tune.error"] for t in trials)


def test_an_interrupted_sweep_leaves_no_run_running(tmp_path, monkeypatch):
    def interrupted(self, hp, model, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(TransferHyperModel, "fit", interrupted)
    settings = make_settings(tmp_path, [*TINY, *FIXED])
    with pytest.raises(KeyboardInterrupt):
        run_sweep(settings)
    _, sweeps, trials = trial_runs(settings)
    assert [s.info.status for s in sweeps] == ["KILLED"] and [t.info.status for t in trials] == ["KILLED"]
    assert trials[0].data.tags["tune.error"] == "the sweep ended (KILLED) during this trial"


def test_a_sweep_in_which_every_trial_failed_registers_nothing_and_ends_failed(tmp_path):
    settings = make_settings(tmp_path, [*TINY, "tuner.options.max_trials=1", "search.learning_rate.value=1e30"])
    with pytest.raises(
        SearchFailedError, match=r"no trial completed \(1 FAILED\); trial 0 failed with: .*loss became"
    ) as err:
        run_sweep(settings)
    assert "\n" not in str(err.value) and "nothing was registered" in str(err.value)
    client, sweeps, trials = trial_runs(settings)
    assert [s.info.status for s in sweeps] == ["FAILED"] and [t.info.status for t in trials] == ["FAILED"]
    tags, metrics = sweeps[0].data.tags, sweeps[0].data.metrics
    assert "tune.best_run_id" not in tags and "tune.model_version" not in tags
    assert not {"test_accuracy", "test_loss", "best_val_accuracy"} & set(metrics)
    assert client.search_registered_models() == []
    artifacts = {a.path for a in client.list_artifacts(sweeps[0].info.run_id)}
    assert "trials.csv" in artifacts and "model" not in artifacts  # the record of what failed stays


def test_a_refit_that_diverges_registers_the_best_trials_own_model_and_says_why(tmp_path, monkeypatch):
    def diverged(*args, **kwargs):
        raise kt.errors.FailedTrialError("loss became nan at epoch 0 batch 3; trial stopped")

    monkeypatch.setattr("tune.search.outcome.refit_best", diverged)
    settings = make_settings(tmp_path, [*TINY, *FIXED, "tuner.options.max_trials=1"])
    result = run_sweep(settings)
    assert result.refit is None and result.model_version == "1"
    client, sweeps, trials = trial_runs(settings)
    assert [s.info.status for s in sweeps] == ["FINISHED"] and [t.info.status for t in trials] == ["FINISHED"]
    tags = sweeps[0].data.tags
    assert tags["tune.registered_model"] == "trial" and "loss became nan" in tags["tune.refit_error"]
    assert "test_accuracy" in sweeps[0].data.metrics


def test_an_error_no_retry_can_fix_stops_the_search_at_its_first_trial(tmp_path, monkeypatch):
    calls = []

    def misconfigured(self, hp, model, *args, **kwargs):
        calls.append(hp.get("learning_rate"))
        raise ConfigError("search.thawed_layers: as if a check could only run inside the trial")

    monkeypatch.setattr(TransferHyperModel, "fit", misconfigured)
    settings = make_settings(tmp_path, [*TINY, *FIXED, "tuner.options.max_trials=4"])
    with pytest.raises(ConfigError, match="as if a check"):
        run_sweep(settings)
    assert len(calls) == 1  # not retried, no next trial drawn
    _, sweeps, trials = trial_runs(settings)
    assert [s.info.status for s in sweeps] == ["FAILED"] and [t.info.status for t in trials] == ["FAILED"]


def test_an_interrupt_swallowed_between_trials_still_ends_the_sweep_killed(tmp_path, monkeypatch):
    """As when a library catches the KeyboardInterrupt of a Ctrl-C that lands in its code."""
    release = tune.search.tuners.release_traced_gradients

    def interrupted_then_swallowed():
        with contextlib.suppress(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        return release()

    monkeypatch.setattr(tune.search.tuners, "release_traced_gradients", interrupted_then_swallowed)
    settings = make_settings(tmp_path, [*TINY, *FIXED, "tuner.options.max_trials=3"])
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupts.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(settings)
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
        interrupts.reset()
    _, sweeps, trials = trial_runs(settings)
    assert [s.info.status for s in sweeps] == ["KILLED"]
    assert len(trials) == 1  # the second trial never started
