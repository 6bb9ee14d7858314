"""Before a sweep records anything: check the config, make the data if asked, fetch the weights,
and state the search definition its tuner project is keyed by."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Tuple

import keras_tuner as kt

from tune.config.checks import check_folders, check_settings
from tune.config.settings import Settings
from tune.data import synthetic
from tune.model.backbones import build_base, resolve_image_size
from tune.model.recipe import on_training_images
from tune.model.space import base_names

log = logging.getLogger(__name__)
# Settings that do not change what a trial computes, left out of the search definition.
NOT_DEFINING = {
    "training.verbose",
    "training.activation_cache",
    "data.name",
    "tuner.overwrite",
    "tuner.options.max_consecutive_failed_trials",
    "tuner.baseline_margin",
    "tuner.keep_checkpoints",
    "tuner.refit",  # decides the model made after the search, not what a trial computes
    "tuner.distribution_strategy",  # on which devices a trial computes, not what
}
# Prefixes of more such keys: a chief and its workers differ here yet share one project.
NOT_DEFINING_PREFIXES = ("tuner.distributed.",)


def prepare(settings: Settings, objective: kt.Objective) -> Tuple[int, int]:
    """Check the config, generate synthetic data if asked, fetch weights once.

    Returns:
        (height, width) of the images the sweep uses.

    Raises:
        ConfigError, DataError, WeightsUnavailableError: before any run is recorded.
    """
    check_settings(settings)
    if on_training_images(objective):
        log.warning(training_objective_warning(objective.name))
    data = settings.data
    if data.synthetic is not None:
        synthetic.generate(Path(data.root), data.synthetic, data.train_dir, data.test_dir)
    check_folders(data.root, data.train_dir, data.test_dir)
    names = base_names(settings.search.base_model)
    size = resolve_image_size(data.image_size, names[0])
    if settings.model.weights is not None:
        for name in names:
            build_base(name, size, settings.model.weights)  # downloads or reads the weights now
    return size


def training_objective_warning(name: str) -> str:
    """What a training metric as the objective means, for the log and the run's tag."""
    return (
        f"tuner.objective={name} is measured on the training images: it rewards memorising them, and "
        "the best trial by it may generalise worst; val_accuracy or val_loss is the usual choice"
    )


def search_definition(settings: Settings, data_fingerprint: str, tuner: str = "") -> Dict[str, str]:
    """Everything that decides what a sweep's trials compute, as flat `dotted.key: "value"` pairs.

    Args:
        settings: the sweep's settings.
        data_fingerprint: identifies exactly the usable image files (see `tune.data.pipeline`).
        tuner: the tuner that runs (`tune.search.grid`), when it is not `tuner.name`; it
            then enters the definition as `tuner.plan`, so a search that runs another tuner
            never reloads a project of the configured one.
    """
    flat = {"seed": str(settings.seed), "data.files": data_fingerprint, **settings.params()}
    if tuner and tuner != settings.tuner.name:
        flat["tuner.plan"] = tuner
    return {k: v for k, v in sorted(flat.items()) if k not in NOT_DEFINING and not k.startswith(NOT_DEFINING_PREFIXES)}
