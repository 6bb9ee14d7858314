"""A two-point space on an imbalanced folder: a grid runs each point once, the best trial is
flagged below the majority-class baseline, and only its checkpoint stays on disk."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from conftest import TINY, make_settings
from tune.search.sweep import run_sweep
from tune.search.tuners import TrackedGridSearch
from tune.tracking.promotion import promote

pytestmark = pytest.mark.slow
COUNTS = {"Training": {"many": 40, "few": 4}, "Test": {"many": 8, "few": 2}}


def imbalanced_folder(root: Path) -> Path:
    """`many:40 few:4` training and `many:8 few:2` test images, 32x32 noise alike in both classes."""
    rng = np.random.default_rng(0)
    for split, classes in COUNTS.items():
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append((record.levelname, record.getMessage()))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    images = imbalanced_folder(root / "images")
    space = ["search.head_width.value=32", "search.learning_rate.value=0.01", "search.momentum.value=0.9"]
    overrides = [*TINY, "data.synthetic=null", f"data.root={images}", "data.name=imbalanced", "tuner=bayesian"]
    settings = make_settings(
        root, [*overrides, "tuner.options.max_trials=3", *space, "search.thawed_layers.values=[1,2]"]
    )
    handler, logger = Lines(), logging.getLogger("tune")
    level, _ = logger.level, logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        result = run_sweep(settings)
        again = run_sweep(settings)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return dict(settings=settings, result=result, again=again, lines=handler.lines)


def test_a_space_of_two_points_runs_each_once_in_a_grid(small):
    result, settings = small["result"], small["settings"]
    assert isinstance(result.tuner, TrackedGridSearch)
    thawed = sorted(r.values["thawed_layers"] for r in result.records)
    assert thawed == [1, 2] and set(result.trial_statuses.values()) == {"COMPLETED"}
    assert any("2 distinct point(s)" in line and "grid search" in line for _, line in small["lines"])
    run = MlflowClient(settings.tracking.uri).get_run(result.parent_run_id)
    assert run.data.tags["tune.space_points"] == "2" and run.data.tags["tune.tuner"].startswith("grid: ")
    assert result.experiment_id == run.info.experiment_id


def test_a_best_trial_below_the_majority_baseline_is_flagged_and_tagged(small):
    result, settings = small["result"], small["settings"]
    assert result.baseline_accuracy == pytest.approx(8 / 9)  # 8 many, 1 few in the validation split
    assert result.best_val_accuracy == pytest.approx(result.best_score)  # the objective is val_accuracy
    assert result.below_baseline and "commonest class" in result.baseline_warning
    assert ("WARNING", result.baseline_warning) in small["lines"]
    client, name = MlflowClient(settings.tracking.uri), settings.tracking.registered_model_name
    tags = client.get_model_version(name, result.model_version).tags
    assert tags["tune.below_baseline"] == "true"
    assert float(tags["tune.baseline_val_accuracy"]) == pytest.approx(8 / 9, abs=1e-6)
    assert float(tags["tune.best_val_accuracy"]) == pytest.approx(result.best_val_accuracy, abs=1e-6)


def test_only_the_best_trials_checkpoint_stays_and_a_rerun_still_loads_it(small):
    result, again = small["result"], small["again"]
    best = next(r.trial_id for r in result.records if r.score == result.best_score)
    folder = Path(result.tuner.project_dir)
    assert (folder / "oracle.json").is_file()
    for trial_id in result.trial_statuses:
        trial_dir = folder / f"trial_{trial_id}"
        assert (trial_dir / "trial.json").is_file()
        assert any(trial_dir.glob("checkpoint*")) == (trial_id == best)
    assert again.already_finished and again.below_baseline and again.model_version == result.model_version
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(again.model.predict(images, verbose=0), result.model.predict(images, verbose=0))


def test_promote_keeps_a_below_baseline_version_from_champion_unless_forced(small):
    settings = small["settings"]
    kept = promote(settings.data, settings.tracking, settings.promote)
    assert not kept.promoted and "majority-class baseline" in kept.reason and "promote.force=true" in kept.reason
    forced = promote(settings.data, settings.tracking, dataclasses.replace(settings.promote, force=True))
    assert forced.promoted and "majority-class baseline" in forced.reason
