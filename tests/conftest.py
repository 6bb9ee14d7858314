"""Tiny worlds for the tests: generated images, weights=None, one or two epochs, a temporary
MLflow store. Configs are composed with Hydra's Compose API from the real `conf/`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from tune.config import Settings, load_settings  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"

# The quickstart shrunk: 3 classes, 12 training images each, 32x32, 2 trials of 1+1 epochs.
TINY = [
    "experiment=quickstart",
    "data.synthetic.classes=3",
    "data.synthetic.train_per_class=12",
    "data.synthetic.test_per_class=4",
    "data.batch_size=8",
    "tuner.options.max_trials=2",
    "training.head_epochs=1",
    "training.fine_tune_epochs=1",
    "training.verbose=0",
    "search.thawed_layers.min=1",
    "search.thawed_layers.max=2",
]


def compose_config(root: Path, overrides: List[str] = ()):
    """The composed config with every path under `root`."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(
            "config",
            overrides=[f"paths.root_dir={root}", f"paths.output_dir={root}/experiments/run", *overrides],
        )


def make_settings(root: Path, overrides: List[str] = ()) -> Settings:
    """Typed settings, as `python -m tune` would build them from `root`."""
    return load_settings(compose_config(root, overrides), root, list(overrides))


@pytest.fixture
def tiny_settings(tmp_path) -> Settings:
    return make_settings(tmp_path, TINY)
