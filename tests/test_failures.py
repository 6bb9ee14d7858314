"""A failing trial is recorded FAILED with its reason and the search goes on, up to a limit."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from mlflow.tracking import MlflowClient

from conftest import TINY, make_settings
from tune.errors import TuneError
from tune.hypermodel import TransferHyperModel
from tune.sweep import run_sweep

# One value per dimension but the learning rate, so the trials differ only there.
FIXED = [
    "search.head_width.values=[16]", "search.momentum.values=[0.9]",
    "search.thawed_layers.value=1", "tuner.options.max_consecutive_failed_trials=2",
]  # fmt: skip


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
    assert result.trial_statuses == {"0": result.trial_statuses["0"], "1": result.trial_statuses["1"]}
    assert sorted(result.trial_statuses.values()) == ["COMPLETED", "FAILED"]


def test_a_bug_that_fails_every_trial_stops_the_sweep_after_the_limit_showing_the_first_error(tmp_path, monkeypatch):
    calls = []

    def broken_fit(self, hp, model, *args, **kwargs):
        calls.append(hp.get("learning_rate"))
        raise ZeroDivisionError(f"division by zero in trial {len(calls)}")

    monkeypatch.setattr(TransferHyperModel, "fit", broken_fit)
    settings = make_settings(tmp_path, [*TINY, *FIXED, "tuner.options.max_trials=5"])
    with pytest.raises(TuneError, match=r"2 trials failed in a row \(tuner.options.max_consecutive_failed_trials=2\)") as err:
        run_sweep(settings)
    assert "ZeroDivisionError: division by zero in trial 1" in str(err.value)  # the first, not the last
    assert len(calls) == 2
    _, sweeps, trials = trial_runs(settings)
    assert [s.info.status for s in sweeps] == ["FAILED"]
    assert sorted(t.info.status for t in trials) == ["FAILED", "FAILED"]
    assert all("ZeroDivisionError" in t.data.tags["tune.error"] for t in trials)


def test_out_of_memory_in_a_phase_fails_the_trial_with_a_hint(tmp_path, monkeypatch):
    def exhausted(self, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[64,512,14,14]")

    hypermodel = TransferHyperModel.__new__(TransferHyperModel)
    hypermodel.objective, hypermodel.direction = "val_accuracy", "max"
    hypermodel.training = make_settings(tmp_path, TINY).training
    monkeypatch.setattr(keras.Model, "fit", exhausted)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    import keras_tuner as kt

    with pytest.raises(kt.errors.FailedTrialError, match="out of memory: OOM when allocating.*data.batch_size"):
        hypermodel._fit_phase(model, np.zeros((4, 2)), None, [], 0, 1)


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
