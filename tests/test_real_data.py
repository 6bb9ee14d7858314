"""Heavier: whole sweeps on real Fruits-360 photos (run with `python -m pytest -m slow`)."""

from __future__ import annotations

import pytest

from conftest import make_settings
from test_data import SHARED
from tune.sweep import run_sweep

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED / "fruits-360-4class").is_dir(), reason="shared Fruits-360 data not present"),
]


@pytest.mark.parametrize("model, size", [("vgg16", 64), ("xception", 71)])
def test_a_random_base_learns_the_four_fruits_far_above_chance(model, size, tmp_path):
    settings = make_settings(
        tmp_path,
        [
            "data=fruits4", f"data.root={SHARED / 'fruits-360-4class'}", f"data.image_size=[{size},{size}]",
            f"model={model}", "model.weights=null", "tuner.options.max_trials=1",
            "search.learning_rate.value=0.003", "search.momentum.value=0.9", "search.thawed_layers.value=2",
            "training.head_epochs=1", "training.fine_tune_epochs=1", "training.verbose=0",
        ],
    )  # fmt: skip
    result = run_sweep(settings)
    assert result.trial_statuses == {"0": "COMPLETED"}
    assert result.test_metrics["test_accuracy"] > 0.9  # chance is 0.25
