"""The classifier: raw pixels in, the base's own preprocessing, a frozen base, a new head.

Layout (after the Keras transfer-learning guide):

    image            float32 (batch, height, width, 3), RGB in [0, 255]
    preprocess_input the base model's own keras.applications preprocess_input
    base_model       include_top=False, called with training=False
    head_pool        GlobalAveragePooling2D | GlobalMaxPooling2D | Flatten -> (batch, C)
    head_standardize Normalization with fixed feature statistics (optional)
    head_dense       Dense(width, relu)
    head_dropout     Dropout (optional)
    predictions      Dense(num_classes, softmax), float32 -> (batch, num_classes), sums to 1

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
) -> keras.Model:
    """Build the full classifier with its base frozen (ready for phase 1).

    Args:
        base_name: a key of `tune.model.backbones.BASE_MODELS`.
        image_size: (height, width) in pixels.
        num_classes: number of output classes, at least 2.
        weights: "imagenet", a weights file path, or None; see `tune.model.backbones.build_base`.
        head: pooling and dropout of the head.
        head_width: units of the head's hidden Dense layer, at least 1.
        standardize: (mean, variance) of the pooled features, float32 `(C,)` each, from
            `feature_statistics`; None leaves the features as they are.
        seed: seeds the head's initial weights and dropout, so a trial's head starts the
            same whichever path trains it; None draws from Keras' global generator.

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
    base = build_base(base_name, image_size, weights)
    freeze(base)
    x = base(x, training=False)  # BatchNorm stays in inference mode, even when thawed
    x = POOLING[head.pooling](name="head_pool")(x)
    if standardize is not None:
        mean, variance = standardize
        x = keras.layers.Normalization(axis=-1, mean=mean, variance=variance, name="head_standardize")(x)
    x = keras.layers.Dense(head_width, activation="relu", kernel_initializer=_glorot(seed, 0), name="head_dense")(x)
    if head.dropout > 0:
        x = keras.layers.Dropout(head.dropout, seed=seed, name="head_dropout")(x)
    # float32 probabilities under every precision policy (Keras mixed-precision guide)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", kernel_initializer=_glorot(seed, 1), dtype="float32", name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name="classifier")


def _glorot(seed: Optional[int], offset: int) -> keras.initializers.Initializer:
    """Keras' default kernel initializer, seeded with `seed + offset` (unseeded for None)."""
    return keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)


def feature_statistics(
    base_name: str, image_size: tuple, weights: Optional[str], pooling: str, images: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and one overall variance of the base's pooled features.

    Args:
        base_name, image_size, weights: as for `build_classifier`.
        pooling: a key of `POOLING`.
        images: float32 `(n, height, width, 3)` RGB in [0, 255], training images only.

    Returns:
        (mean, variance), float32 `(C,)` each; `variance` holds the mean of the channel
        variances in every entry, floored at 1e-12.
    """
    inputs = keras.Input((*image_size, 3))
    x = build_base(base_name, image_size, weights)(preprocessing(base_name, image_size)(inputs), training=False)
    pooled = predict_rows(keras.Model(inputs, POOLING[pooling]()(x)), images, np.arange(len(images)))
    mean = pooled.mean(axis=0)
    variance = np.full_like(mean, max(float(pooled.var(axis=0).mean()), 1e-12))
    return mean.astype("float32"), variance.astype("float32")
