"""The refit at the end of a sweep: trained on every training image, registered, resumed when
interrupted; `tuner.refit=false` registers the best trial's own model."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import tune.search.outcome
from conftest import TINY, make_settings
from tune.model.hypermodel import TransferHyperModel
from tune.search.refit import chosen_epochs
from tune.search.sweep import run_sweep
from tune.search.tuners import completed_best
from tune.tracking.registry import load_classifier

pytestmark = pytest.mark.slow
X = np.random.default_rng(3).uniform(0, 255, (6, 32, 32, 3)).astype("float32")


def _sweep(root, overrides, interrupt=False):
    """Run a sweep, noting each `fit` with no validation data (a refit): its phases' epoch settings."""
    settings, refits = make_settings(root, overrides), []
    fit = TransferHyperModel.fit

    def spy_fit(self, hp, model, x, validation_data=None, **kwargs):
        if validation_data is None:
            refits.append((self.training.head_epochs, self.training.fine_tune_epochs))
        return fit(self, hp, model, x, validation_data=validation_data, **kwargs)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransferHyperModel, "fit", spy_fit)
        if interrupt:
            patch.setattr(tune.search.outcome, "refit_best", killed)
            with pytest.raises(KeyboardInterrupt):
                run_sweep(settings)
            return settings, refits, None
        return settings, refits, run_sweep(settings)


def _predict(settings, ref):
    return load_classifier(f"models:/{settings.tracking.registered_model_name}{ref}").predict(X, verbose=0)


@pytest.fixture(scope="module")
def refitted(tmp_path_factory):
    """A tiny sweep killed during its refit, then run again: the rerun refits and registers once."""
    root = tmp_path_factory.mktemp("refit")
    settings, _, _ = _sweep(root, TINY, interrupt=True)
    client = MlflowClient(settings.tracking.uri)
    experiment = client.get_experiment_by_name(settings.tracking.experiment_name).experiment_id
    (sweep,) = client.search_runs([experiment], "tags.`tune.role` = 'sweep'")
    killed = dict(versions=len(client.search_model_versions()), status=sweep.info.status)
    settings, refits, result = _sweep(root, TINY)
    return dict(settings=settings, refits=refits, result=result, client=client, killed=killed, root=root)


def test_a_sweep_killed_during_its_refit_refits_again_and_registers_once(refitted):
    result, client = refitted["result"], refitted["client"]
    assert refitted["killed"] == dict(versions=0, status="KILLED")
    assert result.resumed and result.refit is not None and len(refitted["refits"]) == 1
    assert [str(v.version) for v in client.search_model_versions()] == [result.model_version]


def test_the_refit_trains_on_every_training_image_for_the_epochs_its_trial_chose(refitted):
    result, client = refitted["result"], refitted["client"]
    parent = client.get_run(result.parent_run_id)
    metrics, tags = parent.data.metrics, parent.data.tags
    assert metrics["refit_images"] == result.refit.images == 30 + 6  # training + validation split
    assert metrics["train_images"] == 30
    best = completed_best(result.tuner.oracle)
    trial_run = client.get_run(parent.data.tags["tune.best_run_id"])
    points = sorted(client.get_metric_history(trial_run.info.run_id, "val_accuracy"), key=lambda m: m.step)
    history = [m.value for m in points]
    epochs = chosen_epochs(history, int(trial_run.data.metrics["epochs_head"]), "max")
    assert refitted["refits"] == [(epochs.head, epochs.fine_tune)]
    assert (metrics["refit_epochs_head"], metrics["refit_epochs_fine_tune"]) == (epochs.head, epochs.fine_tune)
    assert tags["tune.refit_trial"] == best.trial_id == tags["tune.registered_trial"]
    assert len(client.get_metric_history(parent.info.run_id, "refit_loss")) == epochs.head + epochs.fine_tune


def test_the_refit_model_is_the_registered_one_and_differs_from_the_trials(refitted):
    settings, result, client = refitted["settings"], refitted["result"], refitted["client"]
    trial_model = result.tuner.load_model(completed_best(result.tuner.oracle))
    refit_weights = result.model.get_layer("head_dense").get_weights()[0]
    assert not np.allclose(refit_weights, trial_model.get_layer("head_dense").get_weights()[0])
    np.testing.assert_allclose(_predict(settings, "@challenger"), result.model.predict(X, verbose=0), atol=1e-5)
    version = client.get_model_version(settings.tracking.registered_model_name, result.model_version)
    assert version.tags["tune.registered_model"] == "refit"
    assert client.get_run(result.parent_run_id).data.tags["tune.registered_model"] == "refit"
    assert client.get_run(result.parent_run_id).data.metrics["test_accuracy"] == pytest.approx(
        result.test_metrics["test_accuracy"]
    )


def test_a_finished_refit_sweep_reports_the_registered_model_without_training(refitted):
    _, refits, again = _sweep(refitted["root"], TINY)
    assert again.already_finished and refits == [] and again.model_version == refitted["result"].model_version
    expected = refitted["result"].model.predict(X, verbose=0)
    np.testing.assert_allclose(again.model.predict(X, verbose=0), expected, atol=1e-5)


def test_refit_false_registers_the_best_trials_own_model(tmp_path):
    settings, refits, result = _sweep(tmp_path, [*TINY, "tuner.refit=false", "tuner.options.max_trials=1"])
    client = MlflowClient(settings.tracking.uri)
    parent = client.get_run(result.parent_run_id)
    assert refits == [] and result.refit is None and "refit_images" not in parent.data.metrics
    assert parent.data.tags["tune.registered_model"] == "trial"
    trial_model = result.tuner.load_model(completed_best(result.tuner.oracle))
    np.testing.assert_allclose(_predict(settings, "@challenger"), trial_model.predict(X, verbose=0), atol=1e-5)
