"""The base each trial starts from, and the statistics its head is standardised with.

A usable random base for `model.weights=null`: scaled to unit variance on training images.

A randomly initialised base, frozen and called in inference mode, passes almost nothing on:
its BatchNorm layers keep their initial statistics (mean 0, variance 1) and never normalise,
so a random Xception's last features are about 1e-5 and a head trained on them stays at
chance. Before the sweep, each weight-bearing layer's kernel is therefore divided, input
first, by the standard deviation of that layer's output on a batch of training images, until
it is 1 -- the variance step of LSUV (Mishkin & Matas, "All you need is a good init",
ICLR 2016). Nothing is learnt from labels here; pretrained weights are never touched.

The scaled base is saved as a weights file and every trial starts from it, so trials differ
by their hyperparameters, not by a random draw of the base. The head's standardisation
statistics (see `tune.model.classifier`) are measured once per search and kept beside it.
Both live in the search's tuner project, so a resumed search reuses exactly what its
earlier trials used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
from rich.progress import track

from tune.files import replacing
from tune.model.backbones import build_base, thawable_layers
from tune.model.classifier import cached_feature_statistics, feature_statistics, preprocessing


def scale_to_unit_variance(
    base: keras.Model, images: np.ndarray, tolerance: float = 0.05, rounds: int = 3
) -> List[float]:
    """Scale each weight-bearing layer's kernel so its output has standard deviation 1.

    Args:
        base: a base model from `build_base`; its kernels are changed in place.
        images: preprocessed images, float32 `(n, height, width, 3)`; 8 to 32 are plenty.
        tolerance: stop scaling a layer once |std - 1| is below this.
        rounds: at most this many scalings per layer.

    Returns:
        The output standard deviation of each layer after scaling, input first.
    """
    stds = []
    for layer in track(thawable_layers(base), description="scaling the random base", transient=True):
        probe = keras.Model(base.inputs, layer.output)
        kernel = [w for w in layer.weights if "kernel" in w.name][-1]  # pointwise for separable
        std = _output_std(probe, images)
        for _ in range(rounds):  # usually one: a kernel without bias scales its output exactly
            if std == 0 or abs(std - 1) < tolerance:
                break
            kernel.assign(kernel / std)
            std = _output_std(probe, images)
        stds.append(std)
    return stds


def _output_std(probe: keras.Model, images: np.ndarray) -> float:
    return float(np.std(keras.ops.convert_to_numpy(probe(images, training=False))))


def unit_variance_base(name: str, image_size: tuple, images: np.ndarray, folder: Path) -> Path:
    """Build a random base, scale it on `images` and save its weights under `folder`, once.

    A file already saved there is reused as it is, so every trial of a search, resumed or
    not, starts from the same base.

    Args:
        name: a key of `tune.model.backbones.BASE_MODELS`.
        image_size: (height, width) in pixels.
        images: float32 `(n, height, width, 3)` RGB in [0, 255], training images only.
        folder: where the weights file goes (created if missing).

    Returns:
        The path of `<name>-<height>x<width>-unit-variance.weights.h5`, usable as
        `model.weights`.
    """
    path = folder / f"{name}-{image_size[0]}x{image_size[1]}-unit-variance.weights.h5"
    if path.exists():
        return path
    base = build_base(name, image_size, None)
    scale_to_unit_variance(base, preprocessing(name, image_size)(images))
    with replacing(path, suffix=".weights.h5") as temporary:
        base.save_weights(temporary)
    return path


def base_weights(
    names: Sequence[str], weights: Optional[str], image_size: tuple, sample: np.ndarray, folder: Path
) -> Dict[str, str]:
    """Base model name -> the weights its trials start from.

    Args:
        names: the base models the search draws.
        weights: `model.weights`: "imagenet", a file, or None for unit-variance random bases.
        image_size: (height, width) in pixels.
        sample: float32 `(n, height, width, 3)` RGB in [0, 255], training images; the first
            16 scale a random base.
        folder: where random bases are saved (the search's `bases/` folder).
    """
    if weights is not None:
        return {name: weights for name in names}
    return {name: str(unit_variance_base(name, image_size, sample[:16], folder)) for name in names}


def head_statistics(
    weights: Dict[str, str],
    image_size: tuple,
    pooling: str,
    sample: np.ndarray,
    folder: Path,
    blocks: Sequence[int] = (0,),
    grid: int = 3,
    cached: Optional[Dict[str, Dict[int, np.ndarray]]] = None,
) -> Dict[str, Dict[int, Tuple[np.ndarray, np.ndarray]]]:
    """Base model name -> feature block -> (mean, variance) of the features a head there reads, measured once.

    Kept in `folder/<name>-statistics.npz` (block 0) and `<name>-block<k>-grid<g>-statistics.npz`,
    which are read back when present, so a resumed search's trials use the statistics its
    earlier trials used. Where `cached` holds the sample's activations at a block's feature
    cut, they are pooled (`cached_feature_statistics`) instead of running the base again.

    Args:
        weights: base model name -> its weights (see `base_weights`).
        image_size: (height, width) in pixels.
        pooling: the head's pooling on the last block, a key of `tune.model.classifier.POOLING`.
        sample: float32 `(n, height, width, 3)` RGB in [0, 255], training images only.
        folder: the search's `bases/` folder.
        blocks: the `search.feature_block` values the search draws.
        grid: `model.head.grid`, for blocks >= 1.
        cached: base model name -> block -> float32 or float16 `(n, h, w, C)`, the output
            of that block's feature cut for the images of `sample`, unaugmented (from the
            activation cache); blocks not in it run the base on `sample`.
    """
    statistics: Dict[str, Dict[int, Tuple[np.ndarray, np.ndarray]]] = {}
    for name, path in weights.items():
        statistics[name] = {}
        for block in blocks:
            saved = folder / (
                f"{name}-statistics.npz" if block == 0 else f"{name}-block{block}-grid{grid}-statistics.npz"
            )
            if not saved.exists():
                activations = ((cached or {}).get(name) or {}).get(block)
                if activations is not None:
                    mean, variance = cached_feature_statistics(activations, pooling, block, grid)
                else:
                    mean, variance = feature_statistics(name, image_size, path, pooling, sample, block, grid)
                with replacing(saved) as temporary, open(temporary, "wb") as out:
                    np.savez(out, mean=mean, variance=variance)
            with np.load(saved) as stored:
                statistics[name][block] = (stored["mean"], stored["variance"])
    return statistics


def describe(weights: Optional[str]) -> str:
    """How the bases were initialised, in words (the sweep run's `tune.base_init` tag)."""
    if weights is None:
        return "random, scaled to unit variance on training images (no pretraining)"
    return "imagenet" if weights == "imagenet" else f"file {weights}"
