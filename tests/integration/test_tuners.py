"""Every tuner end to end on the tiny world (random search: see test_sweep.py)."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, make_settings
from tune.model.hypermodel import TransferHyperModel
from tune.search.sweep import run_sweep

pytestmark = pytest.mark.slow


def children(settings, parent_run_id):
    client = MlflowClient(settings.tracking.uri)
    experiment = client.get_run(parent_run_id).info.experiment_id
    return client, client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_run_id}'")


def test_bayesian_optimisation_runs_its_trials_and_registers_the_best(tmp_path):
    options = ["tuner=bayesian", "tuner.options.max_trials=3", "tuner.options.num_initial_points=1"]
    settings = make_settings(tmp_path, [*TINY, *options])
    result = run_sweep(settings)
    client, runs = children(settings, result.parent_run_id)
    assert sorted(r.data.tags["tune.trial_id"] for r in runs) == ["0", "1", "2"]
    assert {r.info.status for r in runs} == {"FINISHED"} and len(result.records) == 3
    version = client.get_model_version_by_alias(settings.tracking.registered_model_name, "challenger")
    assert str(version.version) == result.model_version and version.run_id == result.parent_run_id


@pytest.fixture(scope="module")
def hyperband(tmp_path_factory):
    """A Hyperband search with budgets of 1 and 3 epochs, phase 1 being the first epoch."""
    root = tmp_path_factory.mktemp("hyperband")
    options = ["tuner=hyperband", "tuner.options.max_epochs=3", "tuner.options.factor=3", "training.head_epochs=1"]
    options.append("tuner.keep_checkpoints=all")  # the test reloads the checkpoints continued trials started from
    # the preset's max_trials is left out: Hyperband sets its own number of trials
    settings = make_settings(root, [*TINY, *options])
    starts = {}  # trial continued -> the head's kernel the continuing trial's fit started from
    fit = TransferHyperModel.fit

    def spy_fit(self, hp, model, *args, **kwargs):
        if "tuner/trial_id" in hp.values:
            starts[hp.values["tuner/trial_id"]] = model.get_layer("head_dense").get_weights()[0].copy()
        return fit(self, hp, model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransferHyperModel, "fit", spy_fit)
        result = run_sweep(settings)
    return settings, result, starts


def test_hyperband_continues_a_trial_from_its_checkpoint_running_only_the_epochs_left(hyperband):
    settings, result, starts = hyperband
    client, runs = children(settings, result.parent_run_id)
    continued = [r for r in runs if r.data.params.get("tuner/trial_id")]
    assert continued and starts and {r.info.status for r in runs} == {"FINISHED"}
    oracle = result.tuner.oracle
    for run in continued:
        previous = run.data.params["tuner/trial_id"]
        first, budget = int(run.data.params["tuner/initial_epoch"]), int(run.data.params["tuner/epochs"])
        assert (first, budget) == (1, 3)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == [1, 2]  # the MLflow step axis goes on from the earlier round
        assert run.data.metrics["epochs_head"] == 0 and run.data.metrics["epochs_fine_tune"] == 2  # in phase 2
        checkpoint = result.tuner.load_model(oracle.trials[previous]).get_layer("head_dense").get_weights()[0]
        np.testing.assert_array_equal(starts[previous], checkpoint)  # started from the earlier best epoch
    fresh = [r for r in runs if not r.data.params.get("tuner/trial_id")]
    for run in fresh:
        budget = int(run.data.params["tuner/epochs"])
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == list(range(budget))
    assert result.model_version == "1"
    sweep = client.get_run(result.parent_run_id)
    assert sweep.data.tags["tune.activation_cache"].startswith("on")  # the cache served every round


def test_a_sweep_under_a_mirrored_strategy_trains_refits_and_registers(tmp_path):
    # On this machine MirroredStrategy mirrors onto the CPU alone: the wiring, not the speed-up.
    settings = make_settings(tmp_path, [*TINY, "tuner.distribution_strategy=mirrored", "tuner.options.max_trials=2"])
    result = run_sweep(settings)
    client, runs = children(settings, result.parent_run_id)
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 2
    assert client.get_run(result.parent_run_id).data.tags["tune.registered_model"] == "refit"
    version = client.get_model_version_by_alias(settings.tracking.registered_model_name, "challenger")
    assert str(version.version) == result.model_version and 0.0 <= result.test_metrics["test_accuracy"] <= 1.0
