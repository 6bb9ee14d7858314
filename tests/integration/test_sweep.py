"""One tiny sweep end to end, then the properties its MLflow record must have."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import tune.data.pipeline
import tune.model.classifier
import tune.model.inference
import tune.search.tuners
from conftest import TINY, make_settings
from tune.model.hypermodel import TransferHyperModel
from tune.search.sweep import run_sweep
from tune.search.tuners import TrackedRandomSearch

pytestmark = pytest.mark.slow
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Run the tiny sweep once; record the folder each scan, pipeline and forward pass read, and each trial's epochs."""
    root = tmp_path_factory.mktemp("sweep")
    settings = make_settings(root, TINY)
    events, epochs_run, scanned = [], [], {}
    scan_folder, pipeline = tune.data.pipeline.scan_folder, tune.data.pipeline.pipeline
    predict_rows = tune.model.inference.predict_rows
    fit = TransferHyperModel.fit
    search_end = TrackedRandomSearch.on_search_end

    def spy_scan(listing, *args, **kwargs):
        scan = scan_folder(listing, *args, **kwargs)
        scanned[id(scan.images)] = listing.folder.name  # the decoded images of that folder
        events.append(("scan", listing.folder.name))
        return scan

    def spy_pipeline(images, *args, **kwargs):
        events.append(("pipeline", scanned[id(images)]))  # which folder's images feed it
        return pipeline(images, *args, **kwargs)

    def spy_predict(model, images, rows):
        events.append(("predict", scanned.get(id(images), "in memory")))  # the head statistics' sample
        return predict_rows(model, images, rows)

    def spy_fit(self, hp, *args, **kwargs):
        history = fit(self, hp, *args, **kwargs)
        if kwargs.get("validation_data") is not None:  # a trial's; the refit has none
            epochs_run.append(len(history.epoch))
        return history

    def spy_search_end(self):
        events.append(("search_end", None))
        return search_end(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tune.data.pipeline, "scan_folder", spy_scan)
        patch.setattr(tune.data.pipeline, "pipeline", spy_pipeline)
        for module in (tune.model.inference, tune.search.tuners, tune.model.classifier):
            patch.setattr(module, "predict_rows", spy_predict)
        patch.setattr(TransferHyperModel, "fit", spy_fit)
        patch.setattr(TrackedRandomSearch, "on_search_end", spy_search_end)
        result = run_sweep(settings)
    client = MlflowClient(settings.tracking.uri)
    return dict(settings=settings, result=result, events=events, epochs=epochs_run, client=client, root=root)


def _children(sweep):
    client, parent = sweep["client"], sweep["result"].parent_run_id
    experiment = client.get_run(parent).info.experiment_id
    runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    return sorted(runs, key=lambda run: int(run.data.tags["tune.trial_id"]))


def test_one_child_run_per_trial_each_finished_with_its_hyperparameters(sweep):
    children = _children(sweep)
    trials = sweep["result"].tuner.oracle.trials
    assert len(children) == len(trials) == len(sweep["epochs"]) == 2
    for run in children:
        assert run.info.status == "FINISHED"
        trial = trials[run.data.tags["tune.trial_id"]]
        for name in ("base_model", "head_width", "learning_rate", "momentum", "thawed_layers"):
            assert run.data.params[name] == str(trial.hyperparameters.values[name])


def test_each_child_has_one_metric_point_per_epoch_run_on_one_step_axis(sweep):
    client = sweep["client"]
    for run, epochs in zip(_children(sweep), sweep["epochs"]):
        assert epochs == 2  # head + fine-tune: every tiny trial thaws 1 or 2 layers
        for key in METRICS:
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(epochs)), key
        logged = run.data.metrics
        assert logged["epochs_head"] + logged["epochs_fine_tune"] == epochs


def test_parent_run_records_the_sweep_and_the_best_trial(sweep):
    result, client = sweep["result"], sweep["client"]
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.learning_rate.sampling"] == "log"
    assert parent.data.params["tuner.name"] == "random"
    assert parent.data.tags["tune.overrides"] == " ".join(TINY)
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(result.best_score)
    assert parent.data.metrics["test_accuracy"] == pytest.approx(result.test_metrics["test_accuracy"])
    assert 0 <= parent.data.metrics["baseline_val_accuracy"] <= 1
    best_run = client.get_run(parent.data.tags["tune.best_run_id"])
    assert best_run.data.tags["tune.best"] == "true"
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"config.yaml", "class_names.json"} <= artifacts
    assert parent.data.metrics["skipped_files"] == 0 and parent.data.metrics["train_images"] == 30
    keys = [k for run in (parent, *_children(sweep)) for k in (*run.data.params, *run.data.metrics)]
    assert not [k for k in keys if any(name in k for name in result.class_names)]  # class names stay values


def test_best_model_is_registered_with_the_challenger_alias_and_class_names(sweep):
    settings, result, client = sweep["settings"], sweep["result"], sweep["client"]
    version = client.get_model_version_by_alias(settings.tracking.registered_model_name, "challenger")
    assert str(version.version) == result.model_version
    assert json.loads(version.tags["class_names"]) == result.class_names
    assert result.class_names == ["blue triangle", "green square", "red circle"]


def test_registered_model_reloaded_in_a_fresh_process_predicts_the_same(sweep, tmp_path):
    settings, result = sweep["settings"], sweep["result"]
    x = np.random.default_rng(1).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, mlflow\n"
        "mlflow.set_tracking_uri(sys.argv[1])\n"
        "model = mlflow.keras.load_model(sys.argv[2], load_model_kwargs={'safe_mode': True})\n"
        "np.save(sys.argv[4], model.predict(np.load(sys.argv[3]), verbose=0))\n"
    )
    uri = f"models:/{settings.tracking.registered_model_name}@challenger"
    subprocess.run(
        [sys.executable, "-c", script, settings.tracking.uri, uri, tmp_path / "x.npy", tmp_path / "y.npy"],
        check=True,
        cwd=tmp_path,
    )
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), result.model.predict(x, verbose=0), atol=1e-5)


def test_test_images_are_scanned_first_but_reach_a_model_only_after_the_search(sweep):
    events, data = sweep["events"], sweep["settings"].data
    end = events.index(("search_end", None))
    assert {("scan", data.train_dir), ("scan", data.test_dir)} <= set(events[:end])  # bad files found early
    assert [e for e in events[:end] if e[0] == "pipeline"] == [("pipeline", data.train_dir)] * 2  # train, validation
    assert ("predict", data.test_dir) not in events[:end]
    assert [e for e in events[end + 1 :] if e[0] in ("pipeline", "predict")] == [("predict", data.test_dir)]


def test_each_trial_leaves_curves_and_a_validation_report(sweep, tmp_path):
    client, class_names = sweep["client"], sweep["result"].class_names
    for run in _children(sweep):
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"curves.png", "confusion.png", "per_class.csv"} <= names
        folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id)))
        assert (folder / "curves.png").stat().st_size > 10_000
        table = list(csv.DictReader(io.StringIO((folder / "per_class.csv").read_text())))
        assert [row["class"] for row in table[: len(class_names)]] == class_names
        support = sum(int(row["support"]) for row in table[: len(class_names)])
        assert support == sweep["result"].tuner.validation_labels.size == 6  # round(0.2 x 12) of each of 3 classes


def test_sweep_trials_table_matches_the_child_runs(sweep, tmp_path):
    client, result = sweep["client"], sweep["result"]
    folder = Path(client.download_artifacts(result.parent_run_id, "", str(tmp_path)))
    assert (folder / "comparison.png").stat().st_size > 10_000 and (folder / "best_trial_curves.png").is_file()
    rows = list(csv.DictReader(io.StringIO((folder / "trials.csv").read_text())))
    children = _children(sweep)
    assert [row["trial_id"] for row in rows] == [run.data.tags["tune.trial_id"] for run in children]
    for row, run in zip(rows, children):
        assert row["status"] == "COMPLETED" and run.info.status == "FINISHED"
        assert float(row["val_accuracy"]) == pytest.approx(run.data.metrics["best_val_accuracy"])
        for name in ("learning_rate", "momentum", "head_width", "thawed_layers"):
            assert float(row[name]) == pytest.approx(float(run.data.params[name]))
    assert result.summary.count("\n") >= 3 and "val_accuracy" in result.summary
