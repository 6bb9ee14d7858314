"""Image folders to `tf.data` pipelines, from images scanned and cached once (`tune.data.scan`).

Both folders are scanned before any training: every file is decoded once, so a bad file is
found (and skipped or reported, as `data.bad_files` says) before the first trial, not in the
middle of an epoch. The decoded images are memory-mapped from the cache, shared by every
trial; augmentation runs on training batches only. One class-name list, taken from the
training folder, orders the outputs everywhere: the training and validation labels, the test
labels, and the label map stored with the model.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from tune.config.schema import AugmentConfig, DataConfig
from tune.data.scan import Listing, Scan, Skipped, list_folder, scan_folder
from tune.errors import DataError
from tune.files import short_hash, take_rows

AUTOTUNE = tf.data.AUTOTUNE
SAMPLE = 256  # training images kept unaugmented in `SearchData.sample`


@dataclass
class SplitRows:
    """The decoded images of a sweep's training and validation splits, row by row.

    Attributes:
        images: uint8 `(any, h, w, 3)` RGB in [0, 255], memory-mapped decoded images.
        train_rows, validation_rows: int64 rows of `images` of each split, in pipeline order.
        train_labels, validation_labels: int32 labels of those rows.
        fingerprint: identifies the decoded files (see `tune.data.pipeline.SearchData`).
    """

    images: np.ndarray
    train_rows: np.ndarray
    validation_rows: np.ndarray
    train_labels: np.ndarray
    validation_labels: np.ndarray
    fingerprint: str


@dataclass
class SearchData:
    """The training and validation pipelines of a sweep.

    Attributes:
        train: batches of (images float32 `(batch, h, w, 3)` RGB in [0, 255], labels int32
            `(batch,)` in [0, num_classes)); shuffled each epoch and augmented if enabled.
        validation: the same shapes, never augmented, fixed order.
        class_names: class folder names, sorted; label i is `class_names[i]`.
        train_files: paths of the training-split images.
        validation_files: paths of the validation-split images, in pipeline order.
        baseline_accuracy: validation accuracy of always predicting the most common
            training class, in [0, 1]; the score any trial must beat.
        sample: up to 256 training images, not augmented, float32 `(n, h, w, 3)` in
            [0, 255]; what the base's feature statistics are measured on.
        skipped: files and folders of both folders left out, with reasons (split "train"
            or "test").
        fingerprint: 16 hex digits identifying the usable files of both folders (relative
            path, bytes, mtime) and the class names.
        counts: usable images of each split: "train", "validation" and "test".
        rows: the decoded images and each split's rows, labels and fingerprint, for the
            activation cache (`tune.model.activations`).
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    class_names: List[str]
    train_files: List[str]
    validation_files: List[str]
    baseline_accuracy: float
    sample: np.ndarray
    skipped: List[Skipped]
    fingerprint: str
    counts: Dict[str, int]
    rows: Optional[SplitRows] = None


def check_same_classes(train: Listing, test: Listing) -> List[str]:
    """The class names, after checking the test folder has exactly the training classes.

    Raises:
        DataError: the two class sets differ (both differences named).
    """
    if train.classes != test.classes:
        only_train, only_test = set(train.classes) - set(test.classes), set(test.classes) - set(train.classes)
        raise DataError(
            f"class folders differ between '{train.folder}' and '{test.folder}': only in training "
            f"{sorted(only_train)}, only in test {sorted(only_test)}"
        )
    return train.classes


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


def _scan(cfg: DataConfig, listing: Listing, size: tuple, cache_dir: Optional[Path]) -> Scan:
    return scan_folder(listing, tuple(size), cache_dir, cfg.max_image_pixels, cfg.bad_files)


def split_indices(scan: Scan, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(training, validation) positions into `scan.rows`, stratified by class, both sorted.

    Each class gives round(`fraction` x its images) to validation, at least 1 and at most
    all but 1, drawn with a generator seeded by `seed` and the class name, so a class's
    split does not change when another class's files do.

    Raises:
        DataError: a class has fewer than 2 usable images.
    """
    train, validation = [], []
    for index, name in enumerate(scan.classes):
        positions = np.flatnonzero(scan.labels == index)
        if len(positions) < 2:
            raise DataError(
                f"class folder '{scan.folder / name}' has {len(positions)} usable image(s); expected at least 2, "
                "one for training and one for validation"
            )
        held = min(len(positions) - 1, max(1, round(fraction * len(positions))))
        drawn = np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(positions)
        validation.append(drawn[:held])
        train.append(drawn[held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(validation))


def pipeline(images: np.ndarray, rows: np.ndarray, labels: np.ndarray, batch_size: int, shuffle_seed=None, then=None):
    """Batches of (float32 images, int32 labels) gathered from a (memory-mapped) array.

    Only row indices enter the graph; the pixels are copied from `images` batch by batch
    (`tf.numpy_function`), so the array can be any size.

    Args:
        images: uint8 `(any, h, w, 3)`, RGB in [0, 255].
        rows: int64 `(n,)`, the rows of `images` to use, in this order.
        labels: int32 `(n,)`, the label of each row used.
        batch_size: images a batch; the last batch may be smaller.
        shuffle_seed: None keeps `rows`' order; else reshuffled every epoch, seeded.
        then: applied to each batch (x, y) after the cast, e.g. augmentation.

    Returns:
        A dataset of ceil(n / batch_size) batches (its cardinality).
    """
    height, width = images.shape[1:3]
    rows_t, labels_t = tf.constant(rows, tf.int64), tf.constant(labels, tf.int32)

    def load(positions):  # int64 (batch,)
        x = tf.numpy_function(lambda r: take_rows(images, r), [tf.gather(rows_t, positions)], tf.uint8)
        x = tf.ensure_shape(x, (None, height, width, 3))
        return tf.cast(x, tf.float32), tf.gather(labels_t, positions)

    ds = tf.data.Dataset.range(len(rows))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(load, num_parallel_calls=AUTOTUNE)
    if then is not None:
        ds = ds.map(then, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def _baseline(labels: np.ndarray, train: np.ndarray, validation: np.ndarray) -> float:
    """Validation accuracy of always answering the most common training class."""
    majority = np.bincount(labels[train]).argmax()
    return float(np.mean(labels[validation] == majority))


def _sample(scan: Scan, train: np.ndarray, seed: int) -> np.ndarray:
    """Up to `SAMPLE` training images drawn with `seed`, float32 `(n, h, w, 3)`."""
    picked = np.sort(np.random.default_rng(seed).permutation(train)[:SAMPLE])
    return take_rows(scan.images, scan.rows[picked]).astype(np.float32)


def load_search_data(
    cfg: DataConfig, image_size: tuple, augment: AugmentConfig, cache_dir: Optional[Path] = None
) -> SearchData:
    """Scan both folders, then build the training and validation pipelines from `<root>/<train_dir>`.

    The validation split is `cfg.validation_fraction` of each class of the training folder,
    drawn with `cfg.seed`. The test folder is scanned (decoded and cached, so a bad file
    stops the sweep now) but none of its images enters a pipeline here.

    Args:
        cfg: the data settings.
        image_size: (height, width) in pixels.
        augment: the training-image augmentation.
        cache_dir: the decoded-image cache folder; None decodes into memory, keeping nothing.

    Raises:
        DataError: bad folder layout, differing class sets, a class with fewer than 2 usable
            images, or a bad file under `data.bad_files=error`.
    """
    root = Path(cfg.root)
    listings = list_folder(root / cfg.train_dir, "train"), list_folder(root / cfg.test_dir, "test")
    class_names = check_same_classes(*listings)
    data, test = (_scan(cfg, listing, image_size, cache_dir) for listing in listings)
    train, validation = split_indices(data, cfg.validation_fraction, cfg.seed)
    then = None
    if augment.enabled:
        layers = augmentation(augment, cfg.seed)
        then = lambda x, y: (layers(x, training=True), y)  # noqa: E731
    return SearchData(
        train=pipeline(data.images, data.rows[train], data.labels[train], cfg.batch_size, cfg.seed, then),
        validation=pipeline(data.images, data.rows[validation], data.labels[validation], cfg.batch_size),
        class_names=class_names,
        train_files=[data.files[i] for i in train],
        validation_files=[data.files[i] for i in validation],
        baseline_accuracy=_baseline(data.labels, train, validation),
        sample=_sample(data, train, cfg.seed),
        skipped=data.skipped + test.skipped,
        fingerprint=short_hash([data.fingerprint, test.fingerprint]),
        counts={"train": len(train), "validation": len(validation), "test": len(test.rows)},
        rows=SplitRows(
            data.images,
            data.rows[train],
            data.rows[validation],
            data.labels[train],
            data.labels[validation],
            short_hash([data.fingerprint, test.fingerprint]),
        ),
    )


def load_test_images(
    cfg: DataConfig, image_size: tuple, class_names: List[str], cache_dir: Optional[Path] = None
) -> Scan:
    """The decoded images of `<root>/<test_dir>`, labelled with `class_names`, in file order.

    Args:
        cfg: the data settings.
        image_size: (height, width) in pixels.
        class_names: the model's classes; label i is `class_names[i]`.
        cache_dir: the decoded-image cache folder (filled by `load_search_data`); None
            decodes into memory, keeping nothing.

    Raises:
        DataError: the test folder's classes differ from `class_names`, a class folder has
            no usable image, or a bad file under `data.bad_files=error`.
    """
    listing = list_folder(Path(cfg.root) / cfg.test_dir, "test")
    if listing.classes != list(class_names):
        raise DataError(
            f"'{listing.folder}' has classes {listing.classes}; the model was trained on {list(class_names)}"
        )
    return _scan(cfg, listing, image_size, cache_dir)
