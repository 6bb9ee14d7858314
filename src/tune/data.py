"""Image folders to `tf.data` pipelines, with `keras.utils.image_dataset_from_directory`.

One class-name list, taken from the training folder, orders the outputs everywhere: the
training and validation labels, the test labels, and the label map stored with the model.
Decoded images are cached in memory once per sweep and shared by every trial; augmentation
runs after the cache, on training batches only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import keras
import numpy as np
import tensorflow as tf

from tune.config import AugmentConfig, DataConfig
from tune.errors import DataError

AUTOTUNE = tf.data.AUTOTUNE
_IGNORED = ("__MACOSX",)


@dataclass
class SearchData:
    """The training and validation pipelines of a sweep.

    Attributes:
        train: batches of (images float32 `(batch, h, w, 3)` RGB in [0, 255], labels int32
            `(batch,)` in [0, num_classes)); shuffled each epoch and augmented if enabled.
        validation: the same shapes, never augmented, fixed order.
        class_names: class folder names, sorted; label i is `class_names[i]`.
        train_files: paths of the training-split images.
        validation_files: paths of the validation-split images.
        baseline_accuracy: validation accuracy of always predicting the most common
            training class, in [0, 1]; the score any trial must beat.
        sample: up to 256 training images, not augmented, float32 `(n, h, w, 3)` in
            [0, 255]; what the base's feature statistics are measured on.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    class_names: List[str]
    train_files: List[str]
    validation_files: List[str]
    baseline_accuracy: float
    sample: np.ndarray
    fingerprint: str = ""
    skipped: list = None


def class_folders(folder: Path) -> List[str]:
    """Sorted names of the class subfolders of `folder`, hidden and junk folders left out.

    Raises:
        DataError: `folder` does not exist or has fewer than two class folders.
    """
    if not folder.is_dir():
        raise DataError(f"image folder '{folder}' does not exist; expected <class>/* folders there")
    names = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in _IGNORED
    )
    if len(names) < 2:
        raise DataError(f"'{folder}' holds {len(names)} class folder(s) {names}; expected at least 2")
    return names


def check_same_classes(train_dir: Path, test_dir: Path) -> List[str]:
    """The class names, after checking the test folder has exactly the training classes.

    Raises:
        DataError: a folder is missing, or the two class sets differ (both differences named).
    """
    train, test = class_folders(train_dir), class_folders(test_dir)
    if train != test:
        raise DataError(
            f"class folders differ between '{train_dir}' and '{test_dir}': only in training "
            f"{sorted(set(train) - set(test))}, only in test {sorted(set(test) - set(train))}"
        )
    return train


def augmentation(cfg: AugmentConfig, seed: int) -> keras.Sequential:
    """Random flip, rotation and zoom as Keras preprocessing layers (training images only)."""
    layers = []
    if cfg.flip:
        layers.append(keras.layers.RandomFlip(cfg.flip, seed=seed))
    if cfg.rotation:
        layers.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="nearest", seed=seed))
    if cfg.zoom:
        layers.append(keras.layers.RandomZoom(cfg.zoom, fill_mode="nearest", seed=seed))
    return keras.Sequential(layers, name="augmentation")


def _load(folder: Path, class_names: List[str], cfg: DataConfig, image_size: tuple, **split):
    """`image_dataset_from_directory` with our fixed arguments, unbatched."""
    return keras.utils.image_dataset_from_directory(
        folder,
        labels="inferred",
        label_mode="int",
        class_names=class_names,
        color_mode="rgb",
        batch_size=None,
        image_size=tuple(image_size),
        seed=cfg.seed,
        verbose=False,
        **split,
    )


def _labels_of(files: List[str]) -> List[str]:
    return [Path(f).parent.name for f in files]


def load_search_data(cfg: DataConfig, image_size: tuple, augment: AugmentConfig, cache_dir=None) -> SearchData:
    """Build the training and validation pipelines from `<root>/<train_dir>`.

    The validation split is `cfg.validation_fraction` of the training folder, drawn with
    `cfg.seed`. The test folder is not read here.

    Raises:
        DataError: bad folder layout, or a class with no validation image.
    """
    train_dir = Path(cfg.root) / cfg.train_dir
    class_names = check_same_classes(train_dir, Path(cfg.root) / cfg.test_dir)
    train, validation = _load(
        train_dir, class_names, cfg, image_size,
        shuffle=True, validation_split=cfg.validation_fraction, subset="both",
    )  # fmt: skip
    missing = set(class_names) - set(_labels_of(validation.file_paths))
    if missing:
        raise DataError(
            f"data.validation_fraction={cfg.validation_fraction} leaves no validation image "
            f"for classes {sorted(missing)} of '{train_dir}'; raise it or add images"
        )
    counts = Counter(_labels_of(train.file_paths))
    majority = counts.most_common(1)[0][0]
    val_labels = _labels_of(validation.file_paths)
    if augment.enabled:
        pipeline = augmentation(augment, cfg.seed)
        augmented = lambda x, y: (pipeline(x, training=True), y)  # noqa: E731
    return SearchData(
        train=_batched(train, cfg, shuffle=True, then=augmented if augment.enabled else None),
        validation=_batched(validation, cfg),
        class_names=class_names,
        train_files=list(train.file_paths),
        validation_files=list(validation.file_paths),
        baseline_accuracy=val_labels.count(majority) / len(val_labels),
        sample=np.stack([x.numpy() for x, _ in train.take(256)]),
        fingerprint=__import__("hashlib").sha256(str(sorted((f, Path(f).stat().st_size) for f in list(train.file_paths) + list(validation.file_paths))).encode()).hexdigest()[:16],
        skipped=[],
    )


def _batched(ds: tf.data.Dataset, cfg: DataConfig, shuffle: bool = False, then=None):
    """Cache decoded images, then shuffle, batch, augment and prefetch."""
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(2048, seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size)
    if then is not None:
        ds = ds.map(then, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def load_test_data(cfg: DataConfig, image_size: tuple, class_names: List[str], cache_dir=None) -> tf.data.Dataset:
    """Batches of `<root>/<test_dir>` labelled with `class_names`, in file order.

    Raises:
        DataError: the test folder's classes differ from `class_names`.
    """
    test_dir = Path(cfg.root) / cfg.test_dir
    found = class_folders(test_dir)
    if found != list(class_names):
        raise DataError(f"'{test_dir}' has classes {found}; the model was trained on {list(class_names)}")
    return _batched(_load(test_dir, class_names, cfg, image_size, shuffle=False), cfg)
