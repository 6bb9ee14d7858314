"""Image folders to `tf.data` pipelines, from images scanned and cached once (`tune.data.scan`).

Both folders are scanned before any training: every file is decoded once, so a bad file is
found (and skipped or reported, as `data.bad_files` says) before the first trial, not in the
middle of an epoch. The images are then split three ways (`tune.data.partition`: a test
folder, or a test split carved out of one folder; the validation split; duplicates). The
decoded images are memory-mapped from the cache, shared by every trial; augmentation runs on
training batches only. One class-name list, taken from the training folder, orders the
outputs everywhere: the training and validation labels, the test labels, and the label map
stored with the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from tune.config.schema import AugmentConfig, DataConfig
from tune.data.layout import check_apart, check_same_classes, layout_name
from tune.data.partition import Part, partition
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
        sample_rows: their rows of `rows.images`, int64 `(n,)`, ascending.
        skipped: files and folders of both folders left out, with reasons (split "train"
            or "test").
        fingerprint: 16 hex digits identifying the usable files of both folders (relative
            path, bytes, mtime) and the class names.
        counts: usable images of each split: "train", "validation" and "test".
        rows: the decoded images and each split's rows, labels and fingerprint, for the
            activation cache (`tune.model.activations`).
        test: the test split's images (the test folder, or those carved out of the training
            folder); none of them is in a pipeline, the sample or the activation cache.
        test_files: their paths, in evaluation order.
        layout: "split folders" or "one folder" (`tune.data.layout`).
        duplicates: groups of identical images `duplicates_within_split`,
            `duplicates_across_splits`, `duplicates_across_classes`, and under
            `data.duplicates=drop` the images dropped, `duplicates_dropped`.
        duplicate_rows: each copy as (group, split, class, path relative to `data.root`).
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
    test: Optional[Part] = None
    test_files: List[str] = field(default_factory=list)
    layout: str = "split folders"
    duplicates: Dict[str, int] = field(default_factory=dict)
    duplicate_rows: List[list] = field(default_factory=list)
    sample_rows: Optional[np.ndarray] = None


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


def _baseline(train: np.ndarray, validation: np.ndarray) -> float:
    """Validation accuracy of always answering the most common training class (labels in)."""
    return float(np.mean(validation == np.bincount(train).argmax()))


def _sample_rows(rows: np.ndarray, seed: int) -> np.ndarray:
    """Up to `SAMPLE` of `rows` (training rows of the scan's images) drawn with `seed`, ascending."""
    return np.sort(np.random.default_rng(seed).permutation(rows)[:SAMPLE])


def _scan_folders(cfg: DataConfig, image_size: tuple, cache_dir: Optional[Path]) -> Tuple[Scan, Optional[Scan]]:
    """(the training folder's scan, the test folder's or None), after checking the folders apart."""
    root = Path(cfg.root)
    check_apart(cfg.root, cfg.train_dir, cfg.test_dir)
    listing = list_folder(root / cfg.train_dir, "train")
    if cfg.test_dir is None:
        return _scan(cfg, listing, image_size, cache_dir), None
    test_listing = list_folder(root / cfg.test_dir, "test")
    check_same_classes(listing, test_listing)
    return _scan(cfg, listing, image_size, cache_dir), _scan(cfg, test_listing, image_size, cache_dir)


def load_search_data(
    cfg: DataConfig, image_size: tuple, augment: AugmentConfig, cache_dir: Optional[Path] = None
) -> SearchData:
    """Scan the folders, split the images three ways, and build the training and validation pipelines.

    With a test folder (`cfg.test_dir`), its images are the test split; with none, the test
    split is `cfg.test_fraction` of each class of `<root>/<train_dir>`, carved out first.
    The validation split is `cfg.validation_fraction` of each class of what is left, drawn
    by `cfg.validation_split` with `cfg.seed`. Identical images are then handled as
    `cfg.duplicates` says. Every file is decoded now (a bad file stops the sweep now), but
    no test image enters a pipeline here.

    Args:
        cfg: the data settings.
        image_size: (height, width) in pixels.
        augment: the training-image augmentation.
        cache_dir: the decoded-image cache folder; None decodes into memory, keeping nothing.

    Raises:
        ConfigError: the test folder is the training folder, or one holds the other.
        DataError: bad folder layout, differing class sets, a class too small to split, a
            bad file under `data.bad_files=error`, or identical images under
            `data.duplicates=error`.
    """
    folder, test = _scan_folders(cfg, image_size, cache_dir)
    parts = partition(folder, test, cfg)
    train, validation = parts.train, parts.validation
    then = None
    if augment.enabled:
        layers = augmentation(augment, cfg.seed)
        then = lambda x, y: (layers(x, training=True), y)  # noqa: E731
    fingerprint = short_hash([folder.fingerprint, test.fingerprint if test else None])
    sample_rows = _sample_rows(train.rows, cfg.seed)
    return SearchData(
        train=pipeline(folder.images, train.rows, train.labels, cfg.batch_size, cfg.seed, then),
        validation=pipeline(folder.images, validation.rows, validation.labels, cfg.batch_size),
        class_names=folder.classes,
        train_files=train.files,
        validation_files=validation.files,
        baseline_accuracy=_baseline(train.labels, validation.labels),
        sample=take_rows(folder.images, sample_rows).astype(np.float32),
        skipped=folder.skipped + (test.skipped if test else []),
        fingerprint=fingerprint,
        counts={"train": len(train.rows), "validation": len(validation.rows), "test": len(parts.test.rows)},
        rows=SplitRows(folder.images, train.rows, validation.rows, train.labels, validation.labels, fingerprint),
        test=parts.test,
        test_files=parts.test.files,
        layout=layout_name(cfg.test_dir),
        duplicates=parts.duplicates,
        duplicate_rows=parts.duplicate_rows,
        sample_rows=sample_rows,
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
        ConfigError: the test folder is the training folder, or one holds the other.
        DataError: `cfg.test_dir` is None (no test folder), the test folder's classes differ
            from `class_names`, a class folder has no usable image, or a bad file under
            `data.bad_files=error`.
    """
    if cfg.test_dir is None:
        raise DataError(
            f"data.test_dir is null: the test split was carved out of '{Path(cfg.root) / cfg.train_dir}'; "
            "its files are listed in the sweep run's data/test_files.txt"
        )
    check_apart(cfg.root, cfg.train_dir, cfg.test_dir)
    listing = list_folder(Path(cfg.root) / cfg.test_dir, "test")
    if listing.classes != list(class_names):
        raise DataError(
            f"'{listing.folder}' has classes {listing.classes}; the model was trained on {list(class_names)}"
        )
    return _scan(cfg, listing, image_size, cache_dir)
