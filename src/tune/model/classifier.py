"""The classifier: raw pixels in, the base's own preprocessing, a frozen base, a new head.

Layout (after the Keras transfer-learning guide):

    image            float32 (batch, height, width, 3), RGB in [0, 255]
    preprocess_input the base model's own keras.applications preprocess_input
    base_model       include_top=False, called with training=False; cut after an
                     earlier block for feature_block >= 1 (`tune.model.cuts.truncated`)
    head_grid        feature_block >= 1 only: AveragePooling2D onto a g x g grid -> (batch, g, g, C)
    head_pool        GlobalAveragePooling2D | GlobalMaxPooling2D | Flatten -> (batch, C');
                     Flatten for feature_block >= 1 -> (batch, g * g * C)
    head_standardize Normalization with fixed feature statistics (optional)
    head_dense       Dense(width, relu); head_depth=1 only (0: softmax straight on the features)
    head_dropout     Dropout (optional)
    predictions      Dense(num_classes, softmax), float32 -> (batch, num_classes), sums to 1

`head_grid` averages an earlier block's h x w feature map onto a g x g grid
(`model.head.grid`): stride s = h // g, window h - (g - 1) * s, so the windows tile the map
exactly when h is a multiple of g (VGG16's block4_pool at 100x100: 6x6 -> 3x3, windows of
2x2) and overlap a little otherwise (7x7 -> 3x3: windows of 3x3 every 2).

Because preprocessing is inside the model, a saved model takes plain RGB pixels, and it
loads in Keras safe mode with no custom objects.

Why `head_standardize`: a frozen base's pooled features share a large common component
(every channel's mean over images is several times its spread), and their scale depends on
the weights. SGD on such inputs is badly conditioned: with random bases the head's loss
first jumps, then its ReLUs die and it sits at chance. Subtracting each channel's mean and
dividing by one overall standard deviation, both measured once per sweep on training images
(see `feature_statistics`), fixes that for any weights, without amplifying near-constant
channels the way a per-channel variance would.
"""

from __future__ import annotations

from typing import Optional, Tuple

import keras
import numpy as np

from tune.config.schema import HeadConfig
from tune.errors import ConfigError
from tune.model.backbones import build_base, freeze, get_spec
from tune.model.cuts import truncated
from tune.model.inference import predict_rows

POOLING = {
    "avg": keras.layers.GlobalAveragePooling2D,
    "max": keras.layers.GlobalMaxPooling2D,
    "flatten": keras.layers.Flatten,
}


def preprocessing(base_name: str, image_size: tuple) -> keras.Model:
    """The base's own `preprocess_input` as a model of its own, named `preprocess_input`.

    Maps float32 `(batch, height, width, 3)` RGB in [0, 255] to the base's input
    (VGG16: BGR minus the ImageNet channel means; Xception: scaled to [-1, 1]).
    """
    inputs = keras.Input((*image_size, 3), name="rgb")
    outputs = get_spec(base_name).preprocess_input(inputs)
    return keras.Model(inputs, outputs, name="preprocess_input")


def build_classifier(
    base_name: str,
    image_size: tuple,
    num_classes: int,
    weights: Optional[str],
    head: HeadConfig,
    head_width: int,
    standardize: Optional[Tuple[np.ndarray, np.ndarray]] = None,
    seed: Optional[int] = None,
    head_depth: int = 1,
    feature_block: int = 0,
) -> keras.Model:
    """Build the full classifier with its base frozen (ready for phase 1).

    Args:
        base_name: a key of `tune.model.backbones.BASE_MODELS`.
        image_size: (height, width) in pixels.
        num_classes: number of output classes, at least 2.
        weights: "imagenet", a weights file path, or None; see `tune.model.backbones.build_base`.
        head: pooling, grid and dropout of the head.
        head_width: units of the head's hidden Dense layer, at least 1; unused (may be
            None) for `head_depth` 0.
        standardize: (mean, variance) of the pooled features, float32 `(C',)` each, from
            `feature_statistics` for the same `feature_block`; None leaves them as they are.
        seed: seeds the head's initial weights and dropout, so a trial's head starts the
            same whichever path trains it; None draws from Keras' global generator.
        head_depth: hidden Dense layers before the softmax, 0 or 1.
        feature_block: 0 reads the base's output; k >= 1 the end of the block k blocks
            before the last (`BaseModelSpec.blocks`), averaged onto the head's grid.

    Returns:
        An uncompiled `keras.Model` named `classifier`.

    Raises:
        ConfigError: unknown pooling or base name, image too small.
        WeightsUnavailableError: see `tune.model.backbones.build_base`.
    """
    if head.pooling not in POOLING:
        raise ConfigError(f"model.head.pooling='{head.pooling}'; expected one of {sorted(POOLING)}")
    inputs = keras.Input((*image_size, 3), name="image")
    x = preprocessing(base_name, image_size)(inputs)
    base = truncated(build_base(base_name, image_size, weights), base_name, feature_block)
    freeze(base)
    x = base(x, training=False)  # BatchNorm stays in inference mode, even when thawed
    x = pooled(x, head.pooling, head.grid, feature_block)
    if standardize is not None:
        mean, variance = standardize
        x = keras.layers.Normalization(axis=-1, mean=mean, variance=variance, name="head_standardize")(x)
    if head_depth == 1:
        hidden = dict(activation="relu", kernel_initializer=_glorot(seed, 0), name="head_dense")
        x = keras.layers.Dense(head_width, **hidden)(x)
    if head.dropout > 0:
        x = keras.layers.Dropout(head.dropout, seed=seed, name="head_dropout")(x)
    # float32 probabilities under every precision policy (Keras mixed-precision guide)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", kernel_initializer=_glorot(seed, 1), dtype="float32", name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name="classifier")


def pooled(features, pooling: str, grid: int, feature_block: int):
    """The head's first layers on a block's output `(batch, h, w, C)`: `(batch, C')`, see the module docstring.

    Raises:
        ConfigError: for feature_block >= 1, the block's output is smaller than grid x grid.
    """
    if feature_block == 0:
        return POOLING[pooling](name="head_pool")(features)
    height, width = features.shape[1:3]
    if min(height, width) < grid:
        raise ConfigError(
            f"model.head.grid={grid} is above the {height}x{width} output of search.feature_block={feature_block}; "
            "expected a smaller grid or a larger data.image_size"
        )
    strides = (height // grid, width // grid)
    windows = (height - (grid - 1) * strides[0], width - (grid - 1) * strides[1])
    cells = keras.layers.AveragePooling2D(windows, strides, name="head_grid")(features)
    return keras.layers.Flatten(name="head_pool")(cells)


def _glorot(seed: Optional[int], offset: int) -> keras.initializers.Initializer:
    """Keras' default kernel initializer, seeded with `seed + offset` (unseeded for None)."""
    return keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)


def feature_statistics(
    base_name: str,
    image_size: tuple,
    weights: Optional[str],
    pooling: str,
    images: np.ndarray,
    feature_block: int = 0,
    grid: int = 3,
) -> Tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and one overall variance of the pooled features a head reads.

    Args:
        base_name, image_size, weights, feature_block: as for `build_classifier`.
        pooling: a key of `POOLING`, for feature_block 0.
        grid: `model.head.grid`, the side of the grid, for feature_block >= 1.
        images: float32 `(n, height, width, 3)` RGB in [0, 255], training images only.

    Returns:
        (mean, variance), float32 `(C',)` each; `variance` holds the mean of the feature
        variances in every entry, floored at 1e-12.
    """
    inputs = keras.Input((*image_size, 3))
    base = truncated(build_base(base_name, image_size, weights), base_name, feature_block)
    x = base(preprocessing(base_name, image_size)(inputs), training=False)
    head = keras.Model(inputs, pooled(x, pooling, grid, feature_block))
    return _moments(predict_rows(head, images, np.arange(len(images))))


def cached_feature_statistics(
    activations: np.ndarray, pooling: str, feature_block: int = 0, grid: int = 3
) -> Tuple[np.ndarray, np.ndarray]:
    """`feature_statistics` from the block's output already computed (the activation cache).

    Args:
        activations: the output of the base's layer a head on `feature_block` reads
            (`tune.model.cuts.feature_cut`), float32 or float16 `(n, h, w, C)`, for the
            same unaugmented training images (the search's sample: a few hundred rows,
            pooled in one call).
        pooling, feature_block, grid: as for `feature_statistics`.

    Returns:
        As `feature_statistics` returns; equal to it within float tolerance when the
        activations were computed at float32.
    """
    inputs = keras.Input(activations.shape[1:])
    head = keras.Model(inputs, pooled(inputs, pooling, grid, feature_block))
    return _moments(np.asarray(head(np.asarray(activations, np.float32)), np.float32))


def _moments(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(per-feature mean, the mean feature variance in every entry floored at 1e-12), float32 `(C',)` each."""
    mean = features.mean(axis=0)
    variance = np.full_like(mean, max(float(features.var(axis=0).mean()), 1e-12))
    return mean.astype("float32"), variance.astype("float32")
