"""The base models `tune` can put a head on, and how to freeze and thaw them.

One table, `BASE_MODELS`, holds what differs between bases: the `keras.applications`
constructor, its own `preprocess_input`, its minimum and default image sizes, and the blocks
a head may read from. Adding a base is adding a row.

"Thawed layers = N" means the last N *weight-bearing* layers of the base: layers that own
weights and are not BatchNormalization (for VGG16 the 13 Conv2D layers, for Xception its 40
Conv2D and SeparableConv2D layers). BatchNormalization layers always stay frozen and the base
is always called with `training=False`, so their moving statistics never change (the Keras
transfer-learning guide's rule).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import keras

from tune.errors import ConfigError, WeightsUnavailableError


@dataclass(frozen=True)
class BaseModelSpec:
    """One base model of `keras.applications`.

    Attributes:
        constructor: builds the network; called with include_top=False.
        preprocess_input: maps float32 RGB pixels in [0, 255] to what the base expects.
        min_size: smallest height and width (pixels) the base accepts without a top.
        default_size: height and width (pixels) the base was trained at on ImageNet.
        blocks: one layer of each block before the last, earliest first; the block's output
            is the first cut (`tune.model.cuts.cut_points`) at or after that layer.
            `search.feature_block` = k reads the block `blocks[-k]`, k blocks before the last.
    """

    constructor: Callable[..., keras.Model]
    preprocess_input: Callable
    min_size: int
    default_size: int
    blocks: Tuple[str, ...] = ()


# Xception's blocks end in an unnamed `add` (residual sum): named here by a layer inside them.
XCEPTION_BLOCKS = ("block4_pool", *(f"block{k}_sepconv3_bn" for k in range(5, 13)), "block13_pool")


BASE_MODELS = {
    "vgg16": BaseModelSpec(
        keras.applications.VGG16,
        keras.applications.vgg16.preprocess_input,
        32,
        224,
        blocks=("block1_pool", "block2_pool", "block3_pool", "block4_pool"),  # feature_block 1: block4_pool
    ),
    "xception": BaseModelSpec(
        keras.applications.Xception,
        keras.applications.xception.preprocess_input,
        71,
        299,
        blocks=XCEPTION_BLOCKS,  # feature_block 1: the end of block 13, 10: the end of block 4
    ),
}


def get_spec(name: str) -> BaseModelSpec:
    """The registry row for `name`.

    Raises:
        ConfigError: `name` is not a key of `BASE_MODELS`.
    """
    if name not in BASE_MODELS:
        raise ConfigError(
            f"unknown base model '{name}' (model.name or search.base_model); expected one of {sorted(BASE_MODELS)}"
        )
    return BASE_MODELS[name]


def resolve_image_size(requested: Optional[Sequence[int]], base_name: str) -> Tuple[int, int]:
    """(height, width) in pixels: `requested` (`data.image_size`), else `base_name`'s default size.

    Raises:
        ConfigError: `requested` is not two whole numbers, or below the base's minimum size.
    """
    spec = get_spec(base_name)
    if not requested:
        return spec.default_size, spec.default_size
    if len(requested) != 2 or any(isinstance(v, bool) or int(v) != v or v < 1 for v in requested):
        raise ConfigError(f"data.image_size={list(requested)}; expected [height, width] in whole pixels")
    check_size(base_name, requested)
    return int(requested[0]), int(requested[1])


def check_size(base_name: str, size: Sequence[int]) -> None:
    """Raise `ConfigError` when `size` (height, width) is below the base's minimum."""
    spec = get_spec(base_name)
    if min(size) < spec.min_size:
        raise ConfigError(
            f"data.image_size={list(size)} is below {base_name}'s minimum of {spec.min_size}x{spec.min_size} pixels"
        )


def build_base(name: str, image_size: tuple, weights: Optional[str]) -> keras.Model:
    """Build the base model without its top, named `base_model`.

    Args:
        name: a key of `BASE_MODELS`.
        image_size: (height, width) in pixels, each at least the base's `min_size`.
        weights: "imagenet" (downloaded once to ~/.keras/models), a path to a weights file
            saved from the same architecture without top, or None for random initialisation.

    Returns:
        A functional model mapping float32 `(batch, height, width, 3)` preprocessed images
        to the last feature map `(batch, h', w', channels)`.

    The weights of the last file (or "imagenet") loaded are kept in memory, so building the
    same base again, as every trial of a sweep does, reads no file; a file that changed on
    disk (path, inode, size or modification time) is read again.

    Raises:
        ConfigError: unknown name, image too small, or weights path that is not a file.
        WeightsUnavailableError: ImageNet weights could not be downloaded, or the file's
            weights do not fit this architecture.
    """
    spec = get_spec(name)
    check_size(name, image_size)
    height, width = image_size
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise ConfigError(
            f"model.weights='{weights}' is not a file; expected imagenet, null, "
            "or the path of a weights file saved from the base without its top"
        )
    shape = (height, width, 3)
    if weights is None:
        return spec.constructor(include_top=False, weights=None, input_shape=shape, name="base_model")
    source = _weights_source(name, weights)
    if source in _LOADED:  # a sweep builds the same base for every trial: read its weights once
        base = spec.constructor(include_top=False, weights=None, input_shape=shape, name="base_model")
        base.set_weights(_LOADED[source])
        return base
    try:
        base = spec.constructor(include_top=False, weights=weights, input_shape=shape, name="base_model")
    except Exception as err:  # Keras raises a bare Exception for a failed download.
        raise _weights_error(name, weights, err) from err
    _LOADED.clear()  # one base's weights kept at a time (VGG16: 59 MB, Xception: 83 MB)
    _LOADED[source] = base.get_weights()
    return base


# (base name, weights source) -> the weights last loaded from it, as `get_weights` lists them.
_LOADED: dict = {}


def _weights_source(name: str, weights: str) -> tuple:
    """What identifies loaded weights: the base and "imagenet", or the file's path, inode, size and mtime."""
    if weights == "imagenet":
        return (name, weights)
    stat = Path(weights).stat()
    return (name, str(Path(weights).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _weights_error(name: str, weights: Optional[str], err: Exception) -> Exception:
    """Turn a failed weight download or load into an error that names the ways out."""
    if weights == "imagenet" and "URL fetch failure" in str(err):
        return WeightsUnavailableError(
            f"the ImageNet weights of {name} could not be fetched ({err}). Without network, "
            "either download them elsewhere and pass model.weights=/path/to/"
            f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5, or train from random "
            "initialisation with model.weights=null"
        )
    if weights not in (None, "imagenet"):
        return WeightsUnavailableError(
            f"model.weights='{weights}' could not be loaded into {name} without top ({type(err).__name__}: {err})"
        )
    return err


def thawable_layers(base: keras.Model) -> List[keras.layers.Layer]:
    """The base's weight-bearing layers (own weights, not BatchNormalization), input first."""
    return [layer for layer in base.layers if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]


@functools.lru_cache(maxsize=None)
def count_thawable(name: str) -> int:
    """How many layers `thaw` can make trainable in base `name` (VGG16: 13, Xception: 40)."""
    spec = get_spec(name)
    size = max(spec.min_size, 75)
    base = spec.constructor(include_top=False, weights=None, input_shape=(size, size, 3))
    return len(thawable_layers(base))


def freeze(base: keras.Model) -> None:
    """Make every layer of `base` untrainable (phase 1)."""
    base.trainable = False


def thaw(base: keras.Model, count: int) -> List[keras.layers.Layer]:
    """Make exactly the last `count` weight-bearing layers of `base` trainable (phase 2).

    BatchNormalization layers stay frozen. The model must be compiled again afterwards for
    the change to take effect.

    Returns:
        The thawed layers, input first.

    Raises:
        ConfigError: `count` is negative or above the number of weight-bearing layers.
    """
    candidates = thawable_layers(base)
    if not 0 <= count <= len(candidates):
        raise ConfigError(
            f"thawed_layers={count} but base '{base.name}' has {len(candidates)} "
            f"weight-bearing layers; expected 0..{len(candidates)}"
        )
    chosen = candidates[len(candidates) - count :]
    chosen_ids = {id(layer) for layer in chosen}
    base.trainable = True
    for layer in base.layers:
        layer.trainable = id(layer) in chosen_ids
    return chosen
