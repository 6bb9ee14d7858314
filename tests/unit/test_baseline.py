"""The best trial against always guessing the commonest class: the baseline of an imbalanced
folder, the figure compared for each objective, and the verdict."""

from __future__ import annotations

import keras_tuner as kt
import numpy as np
import pytest
from PIL import Image

from conftest import TINY, make_settings
from tune.data.pipeline import load_search_data
from tune.search.baseline import BaselineCheck, check_baseline, val_accuracy_at_best


def imbalanced(root, counts):
    """A folder of 32x32 noise images, `counts` = {split: {class: images}}."""
    rng = np.random.default_rng(0)
    for split, classes in counts.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    root / split / name / f"{i}.png"
                )
    return root


def trial(objective: str, history: dict, best_step: int) -> kt.engine.trial.Trial:
    """A completed keras-tuner trial with per-epoch `history` (name -> values) and its best step."""
    found = kt.engine.trial.Trial(kt.HyperParameters(), trial_id="0", status="COMPLETED")
    for name, values in history.items():
        found.metrics.register(name, direction="min" if "loss" in name else "max")
        for step, value in enumerate(values):
            found.metrics.update(name, value, step=step)
    found.best_step, found.score = best_step, history[objective][best_step]
    return found


def test_the_baseline_of_an_imbalanced_folder_is_the_commonest_class_share(tmp_path):
    root = imbalanced(tmp_path / "images", {"Training": {"many": 40, "few": 4}, "Test": {"many": 4, "few": 4}})
    data = make_settings(tmp_path, [*TINY, "data.synthetic=null", f"data.root={root}"]).data
    search = load_search_data(data, (32, 32), make_settings(tmp_path, TINY).training.augment)
    assert search.counts["validation"] == 9 and search.baseline_accuracy == pytest.approx(8 / 9)


def test_a_best_trial_at_0_667_against_a_baseline_of_0_889_is_below_it(caplog):
    found = trial("val_accuracy", {"val_accuracy": [0.444, 0.667, 0.556]}, best_step=1)
    with caplog.at_level("WARNING", logger="tune"):
        check = check_baseline(found, "val_accuracy", 8 / 9, 0.05)
    assert check.best == pytest.approx(0.667) and check.below
    assert "val_accuracy 0.6670 vs baseline 0.8889 + margin 0.0500" in caplog.text
    assert check.tags()["tune.below_baseline"] == "true" and check.warning() in caplog.text


@pytest.mark.parametrize(
    "best, margin, below",
    [(0.95, 0.05, False), (0.93, 0.05, True), (0.889, 0.0, False), (0.889, 0.05, True), (None, 0.05, False)],
)
def test_the_best_must_beat_the_baseline_by_the_margin(best, margin, below):
    check = BaselineCheck(0.889, best, margin)
    assert check.below == below and (check.warning() != "") == below
    assert check.tags()["tune.below_baseline"] == str(below).lower()


def test_with_a_loss_objective_the_val_accuracy_of_the_kept_epoch_is_compared():
    history = {"val_loss": [0.9, 0.4, 0.6], "val_accuracy": [0.5, 0.7, 0.9]}  # the best loss is at epoch 1
    found = trial("val_loss", history, best_step=1)
    assert val_accuracy_at_best(found, "val_loss") == pytest.approx(0.7)  # not the best accuracy, 0.9
    assert val_accuracy_at_best(trial("val_loss", {"val_loss": [0.5]}, 0), "val_loss") is None
