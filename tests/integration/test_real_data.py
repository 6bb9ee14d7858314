"""Real Fruits-360 photos (`../shared/data`): the loader on 33 classes, and whole sweeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, make_settings
from tune.config.schema import AugmentConfig, DataConfig
from tune.data.pipeline import load_search_data, load_test_images
from tune.search.sweep import run_sweep

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED / "fruits-360-4class").is_dir(), reason="shared Fruits-360 data not present"),
]


@pytest.mark.parametrize("model, size", [("vgg16", 64), ("xception", 71)])
def test_a_random_base_learns_the_four_fruits_far_above_chance(model, size, tmp_path):
    settings = make_settings(
        tmp_path,
        [
            *("data=fruits4", f"data.root={SHARED / 'fruits-360-4class'}", f"data.image_size=[{size},{size}]"),
            *(f"model={model}", "model.weights=null", "tuner.options.max_trials=1"),
            *("search.learning_rate.value=0.003", "search.momentum.value=0.9", "search.thawed_layers.value=2"),
            *("training.head_epochs=1", "training.fine_tune_epochs=1", "training.verbose=0"),
        ],
    )
    result = run_sweep(settings)
    assert result.trial_statuses == {"0": "COMPLETED"}
    assert result.test_metrics["test_accuracy"] > 0.9  # chance is 0.25


@pytest.mark.skipif(not (SHARED / "fruits-360-33class-small").is_dir(), reason="shared Fruits-360 data not present")
def test_real_class_names_with_spaces_are_kept_exactly_and_ordered_the_same_for_test(tmp_path):
    root = SHARED / "fruits-360-33class-small"
    cfg = DataConfig(root=str(root), train_dir="Training", test_dir="Testing", image_size=[100, 100], batch_size=64)
    data = load_search_data(cfg, (100, 100), AugmentConfig(enabled=False), tmp_path / "cache")
    assert len(data.class_names) == 33 and "Apple Red 1" in data.class_names
    assert data.class_names == sorted(p.name for p in (SHARED / "fruits-360-33class-small" / "Training").iterdir())
    assert {Path(f).parent.name for f in data.validation_files} == set(data.class_names)
    assert data.skipped == [] and data.counts["train"] + data.counts["validation"] == 3960
    test = load_test_images(cfg, (100, 100), data.class_names, tmp_path / "cache")
    assert np.bincount(test.labels).tolist() == [40] * 33
