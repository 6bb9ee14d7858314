"""The frozen-prefix activation cache: the base's frozen layers run once per sweep, not per epoch.

For every cut a trial can train from (`tune.model.cuts.reachable_cuts`), the prefix's
output for every training and validation image is computed once and kept on disk; each
trial then trains only its top on those activations (`tune.model.hypermodel`). With
augmentation on, `training.augment.views` augmented views of each training image are
computed, and each epoch draws one view per image; validation images are never augmented.

A cache entry is two files in `<cache_dir>/activations/`, named by a key over everything
that decides the values: the base model, the identity of its weights (the file's SHA-256,
or "imagenet" and the Keras version), the image size, the preprocessing (the base's own),
the decoded data (the scan's fingerprint and the rows of each split), the cut, the
precision the prefix runs at, the storage dtype and the augmentation with its views and
seed:

- `<key>.npy`: `(views x n_train + n_validation, *cut_shape)` in the storage dtype, the
  training views first (view v of training image i at row v x n_train + i), read back
  memory-mapped, so peak memory does not grow with the data set;
- `<key>.json`: what the entry holds, written last; an entry without it is rebuilt.

Both are written under a temporary name and renamed into place, and an entry is filled
under an exclusive lock on `<key>.lock`, so concurrent sweeps wait for one another and
then reuse the entry, and a killed fill leaves nothing that is later trusted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from rich.progress import track

from tune.config.schema import AugmentConfig
from tune.data.pipeline import SplitRows, augmentation
from tune.errors import ConfigError
from tune.files import (
    exclusive_lock,
    file_digest,
    read_json,
    release_pages,
    replacing,
    short_hash,
    take_rows,
    write_json,
)
from tune.model import cuts as cutting
from tune.model.inference import BATCH, batches, padded

log = logging.getLogger(__name__)
FORMAT = 2  # bump when what an entry holds changes, so older entries are not reused
MODES = ("auto", "on", "off")
STORAGE = ("float32", "float16")


@dataclass
class ActivationStore:
    """One cut's cached activations for the training and validation images of a sweep.

    Attributes:
        cut: the position in `base.layers` of the layer whose output is cached.
        name: that layer's name, e.g. "block5_pool".
        key: the entry's key (24 hex digits).
        values: memory-mapped `(views x n_train + n_validation, *shape)`, float32 or float16.
        views: training views stored (1 without augmentation).
        train_labels: int32 `(n_train,)` in [0, classes).
        validation_labels: int32 `(n_validation,)`.
        reused: True when the entry was already on disk.
        fill_seconds: how long the pass that filled it took (all cuts filled with it), 0 when reused.
    """

    cut: int
    name: str
    key: str
    values: np.ndarray
    views: int
    train_labels: np.ndarray
    validation_labels: np.ndarray
    reused: bool
    fill_seconds: float = 0.0

    @property
    def n_train(self) -> int:
        return len(self.train_labels)

    def train_batches(self, batch_size: int, seed: int) -> tf.data.Dataset:
        """Training batches of (float32 `(batch, *shape)`, int32 labels), reshuffled every epoch.

        Shuffled exactly as the image pipeline of `tune.data.pipeline` is for the same seed
        and batch size; with several views, each epoch draws one view per image.
        """
        n, views = self.n_train, self.views
        positions = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
        if views > 1:
            draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            positions = tf.data.Dataset.zip(positions, draws).map(lambda i, r: i + (r % views) * n)
        labels = np.tile(self.train_labels, views)
        return self._batches(positions.batch(batch_size), labels, 0)

    def validation_batches(self, batch_size: int) -> tf.data.Dataset:
        """Validation batches of (float32 activations, int32 labels), in file order, never augmented."""
        positions = tf.data.Dataset.range(len(self.validation_labels)).batch(batch_size)
        return self._batches(positions, self.validation_labels, self.views * self.n_train)

    def _batches(self, positions: tf.data.Dataset, labels: np.ndarray, offset: int) -> tf.data.Dataset:
        values, shape = self.values, self.values.shape[1:]
        labels_t = tf.constant(labels, tf.int32)

        def load(batch):  # int64 (batch,)
            x = tf.numpy_function(lambda r: take_rows(values, r + offset), [batch], tf.as_dtype(values.dtype))
            return tf.cast(tf.ensure_shape(x, (None, *shape)), tf.float32), tf.gather(labels_t, batch)

        return positions.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


@dataclass
class CachePlan:
    """Whether a sweep trains on cached activations, and why (the sweep run's tag).

    Attributes:
        enabled: True to cache.
        reason: in words, e.g. "off: training.activation_cache=off".
        views: training views to store (1 without augmentation).
    """

    enabled: bool
    reason: str
    views: int = 1


def plan_cache(mode: str, augment: AugmentConfig) -> CachePlan:
    """Decide the path from `training.activation_cache` and the augmentation.

    Raises:
        ConfigError: `mode` is "on" but the cache cannot serve the config (augmentation
            on with `training.augment.views=0`, i.e. a fresh draw every epoch).
    """
    if mode == "off":
        return CachePlan(False, "off: training.activation_cache=off (every epoch runs the whole base)")
    if augment.enabled and augment.views == 0:
        why = "training.augment.views=0 asks for a fresh augmentation every epoch, which a cache cannot hold"
        if mode == "on":
            raise ConfigError(f"training.activation_cache=on but {why}; set training.augment.views >= 1")
        return CachePlan(False, f"off: {why}")
    views = augment.views if augment.enabled else 1
    augmented = f", {views} augmented views of each training image" if augment.enabled else ""
    return CachePlan(True, f"on ({mode}): frozen layers run once per sweep{augmented}", views)


def weights_identity(weights: Optional[str]) -> str:
    """What identifies a base's weights in a cache key: a file's SHA-256, or "imagenet" with Keras' version.

    Raises:
        ConfigError: `weights` is None (a random draw is not reproducible; the sweep caches
            only from a saved file, as `tune.model.base_init` makes for random bases).
    """
    if weights is None:
        raise ConfigError("activations are cached only from saved weights; model.weights=null is saved first")
    if weights == "imagenet":
        return f"imagenet keras {keras.__version__}"
    return f"file sha256 {file_digest(Path(weights))}"


def entry_key(
    base_name: str,
    weights: Optional[str],
    image_size: Sequence[int],
    cut: int,
    precision: str,
    storage: str,
    rows: SplitRows,
    augment: Optional[AugmentConfig],
    views: int,
    seed: int,
) -> str:
    """The 24-hex-digit key of one cut's entry; any change of what decides its values changes it."""
    return short_hash(
        dict(
            format=FORMAT,
            base=base_name,
            weights=weights_identity(weights),
            image_size=list(image_size),
            preprocessing=f"keras.applications.{base_name}.preprocess_input",
            data=rows.fingerprint,
            train=short_hash(rows.train_rows.tolist()),
            validation=short_hash(rows.validation_rows.tolist()),
            cut=cut,
            precision=precision,
            storage=storage,
            augment=dataclasses.asdict(augment) if augment is not None and augment.enabled else None,
            views=views,
            seed=seed if augment is not None and augment.enabled else None,
        ),
        digits=24,
    )


def _open(folder: Path, key: str, count: int, shape: tuple, storage: str) -> Optional[np.ndarray]:
    """The entry's values memory-mapped, when complete and of the expected shape; else None."""
    report = read_json(folder / f"{key}.json")
    try:
        values = np.load(folder / f"{key}.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    if report is None or report.get("key") != key or values.shape != (count, *shape) or values.dtype != storage:
        return None
    return values


def fill_activations(
    classifier: keras.Model,
    base_name: str,
    weights: str,
    cuts: Sequence[int],
    rows: SplitRows,
    cache_dir: Path,
    precision: str,
    storage: str,
    augment: AugmentConfig,
    views: int,
    seed: int,
) -> Dict[int, ActivationStore]:
    """Cut -> its store, filling every missing entry in one pass over the images.

    Args:
        classifier: a classifier built with the base's sweep weights (its head is unused),
            under the precision policy the trials use.
        base_name: a key of `tune.model.backbones.BASE_MODELS`.
        weights: the weights `classifier`'s base was built with ("imagenet" or a file).
        cuts: the cuts to serve, positions in the base's layers (`tune.model.cuts.reachable_cuts`).
        rows: the decoded images and the rows of each split.
        cache_dir: the cache folder; entries go to `cache_dir/activations/`.
        precision: "float32", "bfloat16" or "float16", recorded in the key.
        storage: "float32" or "float16", the entry's dtype.
        augment: the training augmentation; used when enabled.
        views: augmented views of each training image (1 when augmentation is off).
        seed: seeds the augmentation of each view.

    Raises:
        OSError: the cache folder cannot be written.
    """
    folder = Path(cache_dir) / "activations"
    size = classifier.inputs[0].shape[1:3]
    shapes = cutting.cut_shapes(classifier, cuts)
    count = views * len(rows.train_rows) + len(rows.validation_rows)
    keys = {
        cut: entry_key(base_name, weights, size, cut, precision, storage, rows, augment, views, seed) for cut in cuts
    }
    stores: Dict[int, ActivationStore] = {}
    names = {cut: cutting.cut_name(classifier, cut) for cut in cuts}
    with contextlib.ExitStack() as held:
        for cut in sorted(cuts, key=keys.get):  # one order for every process: no deadlock
            held.enter_context(exclusive_lock(folder / f"{keys[cut]}.lock"))
        missing = []
        for cut in cuts:
            values = _open(folder, keys[cut], count, shapes[cut], storage)
            if values is None:
                missing.append(cut)
            else:
                stores[cut] = ActivationStore(
                    cut, names[cut], keys[cut], values, views, rows.train_labels, rows.validation_labels, True
                )
                log.info("activation cache: reused %s for cut %s (%d rows)", keys[cut], names[cut], count)
        if missing:
            _check_space(folder, sum(count * int(np.prod(shapes[c])) * np.dtype(storage).itemsize for c in missing))
            keyed = {c: keys[c] for c in missing}
            seconds = _fill(classifier, missing, keyed, shapes, rows, folder, storage, augment, views, seed)
            for cut in missing:
                values = np.load(folder / f"{keys[cut]}.npy", mmap_mode="r")
                stores[cut] = ActivationStore(
                    cut, names[cut], keys[cut], values, views, rows.train_labels, rows.validation_labels, False, seconds
                )
    return {cut: stores[cut] for cut in cuts}


def _check_space(folder: Path, needed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise ConfigError(
            f"the activation cache needs {needed / 2**30:.1f} GiB in '{folder}' but {free / 2**30:.1f} GiB are free; "
            "free some space, set training.activation_storage=float16, or training.activation_cache=off"
        )


def fill_order(rows: SplitRows, views: int) -> tuple:
    """The image row behind each row of an entry, and the training view it is (-1: validation).

    Returns:
        (image_rows, view): int64 `(views x n_train + n_validation,)` each. Row r of an entry
        holds the prefix's output for `rows.images[image_rows[r]]`, augmented as view
        `view[r]` (see the module docstring for the layout). The fill runs them as one
        stream, so only its last batch is padded, not the last batch of every split and view.
    """
    train, validation = np.asarray(rows.train_rows, np.int64), np.asarray(rows.validation_rows, np.int64)
    image_rows = np.concatenate([np.tile(train, views), validation])
    view = np.concatenate([np.repeat(np.arange(views), len(train)), np.full(len(validation), -1)])
    return image_rows, view


def _fill(classifier, cuts, keys, shapes, rows: SplitRows, folder, storage, augment, views, seed) -> float:
    """Run the prefix once over every image (each training view), write each cut's entry; return the seconds."""
    model = cutting.prefix(classifier, cuts)
    stream, view_of = fill_order(rows, views)
    count = len(stream)
    layers = {v: augmentation(augment, seed * 1000 + v) for v in range(views)} if augment.enabled else {}
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        temporaries = {cut: stack.enter_context(replacing(folder / f"{keys[cut]}.npy")) for cut in cuts}
        outputs = {
            cut: np.lib.format.open_memmap(temporaries[cut], mode="w+", dtype=storage, shape=(count, *shapes[cut]))
            for cut in cuts
        }
        positions = np.arange(count)
        total = -(-count // BATCH)
        for batch in track(batches(positions), total=total, description="filling the activation cache", transient=True):
            x = take_rows(rows.images, stream[batch]).astype(np.float32)
            for view, layer in layers.items():
                mine = view_of[batch] == view
                if mine.any():
                    x[mine] = np.asarray(layer(x[mine], training=True))
            results = model.predict_on_batch(padded(x))  # one batch shape throughout: traced once
            for cut, result in zip(cuts, results if isinstance(results, list) else [results]):
                outputs[cut][batch] = np.asarray(result[: len(batch)], storage)
                release_pages(outputs[cut])  # written pages stay dirty in the page cache, not in this process
        for array in outputs.values():
            array.flush()
        del outputs
    seconds = time.monotonic() - started
    for cut in cuts:
        layer = cutting.cut_name(classifier, cut)
        write_json(folder / f"{keys[cut]}.json", dict(key=keys[cut], cut=cut, layer=layer, rows=count, views=views))
    log.info(
        "activation cache: filled cut(s) %s, %d images in %.1f s (%.1f images/s)",
        ", ".join(cutting.cut_name(classifier, cut) for cut in cuts),
        count,
        seconds,
        count / max(seconds, 1e-9),
    )
    return seconds
