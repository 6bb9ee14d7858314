"""The search's hypermodel, with what its trials start from made once: base weights, head
statistics and the activation cache. Shared by a sweep, a chief and its workers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from tune.config.settings import Settings
from tune.data.pipeline import SearchData
from tune.model import cuts
from tune.model.activations import ActivationStore, fill_activations, plan_cache
from tune.model.base_init import base_weights, head_statistics
from tune.model.classifier import build_classifier
from tune.model.hypermodel import TransferHyperModel, reachable_cuts
from tune.model.recipe import distribution_strategy, precision
from tune.model.space import base_names, choices

log = logging.getLogger(__name__)


def search_hypermodel(settings: Settings, objective, size: tuple, data: SearchData, bases: Path) -> tuple:
    """(the search space and recipe, the activation cache's tags and metrics for the sweep run).

    Each base gets its starting weights and head statistics (kept in `bases`, the project's
    `bases/` folder) and, with the cache on, the activations of every cut its trials can
    train from (in `settings.cache_dir`). A chief fills all of them before it serves, so its
    workers read them back.

    Args:
        settings: the sweep's settings.
        objective: what the tuner optimises.
        size: (height, width) of the images, in pixels.
        data: the search data.
        bases: the project's `bases/` folder.
    """
    model, training = settings.model, settings.training
    names = base_names(settings.search.base_model)
    weights = base_weights(names, model.weights, size, data.sample, bases)
    plan = plan_cache(training.activation_cache, training.augment)
    log.info("activation cache %s", plan.reason)
    activations, feature_cuts = {}, {}
    for name in names if plan.enabled else []:
        activations[name], feature_cuts[name] = _activations(settings, name, weights[name], size, data, plan.views)
    statistics = {name: None for name in names}
    if model.head.standardize:
        blocks = choices(settings.search, "feature_block")
        cached = None if training.augment.enabled else _sample_activations(activations, feature_cuts, blocks, data)
        statistics = head_statistics(
            weights, size, model.head.pooling, data.sample, bases, blocks, model.head.grid, cached
        )
    tags, metrics = _cache_record(plan.reason, activations)
    hypermodel = TransferHyperModel(
        settings.search,
        len(data.class_names),
        size,
        weights,
        statistics,
        model.head,
        training,
        objective,
        activations=activations,
        batch_size=settings.data.batch_size,
        seed=settings.seed,
        strategy=distribution_strategy(settings.tuner.distribution_strategy),
    )
    return hypermodel, tags, metrics


def _activations(settings: Settings, name: str, weights: str, size, data: SearchData, views: int) -> tuple:
    """(cut -> cached activations of base `name` for every cut its trials can train from,
    feature block -> the cut a head on it reads)."""
    training = settings.training
    with precision(training.precision):
        classifier = build_classifier(name, size, len(data.class_names), weights, settings.model.head, head_width=1)
    base = classifier.get_layer("base_model")
    reachable = reachable_cuts(base, name, settings.search)
    blocks = {block: cuts.feature_cut(base, name, block) for block in choices(settings.search, "feature_block")}
    return fill_activations(
        classifier,
        name,
        weights,
        reachable,
        data.rows,
        Path(settings.cache_dir),
        training.precision,
        training.activation_storage,
        training.augment,
        views,
        settings.seed,
    ), blocks


def _sample_activations(
    activations: dict, feature_cuts: dict, blocks, data: SearchData
) -> Dict[str, Dict[int, np.ndarray]]:
    """Base model name -> feature block -> the cached activations of `data.sample`'s images at
    the block's feature cut, float32 or float16 `(n, h, w, C)`, where that cut is cached.

    Only for caches of unaugmented training images: the statistics are of those.
    """
    if data.rows is None or data.sample_rows is None:
        return {}
    positions = np.flatnonzero(np.isin(data.rows.train_rows, data.sample_rows))  # view 0: rows 0..n_train-1
    cached: Dict[str, Dict[int, np.ndarray]] = {}
    for name, stores in activations.items():
        by_block = {block: stores.get(feature_cuts[name][block]) for block in blocks}
        cached[name] = {block: store.values[positions] for block, store in by_block.items() if store is not None}
    return cached


def _cache_record(reason: str, activations: Dict[str, Dict[int, ActivationStore]]) -> Tuple[dict, dict]:
    """The sweep run's tags and metrics of the activation cache: which path, entries reused and filled."""
    stores = [store for by_cut in activations.values() for store in by_cut.values()]
    if not stores:
        return {"tune.activation_cache": reason}, {}
    cut_list = ", ".join(f"{name}:{store.name}" for name, by_cut in activations.items() for store in by_cut.values())
    filled = [store for store in stores if not store.reused]
    metrics = {
        "activation_cache_reused": float(len(stores) - len(filled)),
        "activation_cache_filled": float(len(filled)),
        "activation_cache_mb": sum(store.values.nbytes for store in stores) / 2**20,
    }
    passes = [next((s for s in by_cut.values() if not s.reused), None) for by_cut in activations.values()]
    passes = [store for store in passes if store is not None]
    if passes:  # one filling pass per base, over every image (each training view) once
        seconds = sum(store.fill_seconds for store in passes)
        metrics["activation_fill_seconds"] = seconds
        metrics["activation_fill_images_per_second"] = sum(s.values.shape[0] for s in passes) / max(seconds, 1e-9)
    return {"tune.activation_cache": f"{reason}; cuts {cut_list}"}, metrics
