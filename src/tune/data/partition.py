"""A sweep's images split three ways, training, validation and test, with duplicates handled.

With a test folder, its images are the test split. Without one (`data.test_dir: null`), the
test split is carved out of the training folder first (`data.test_fraction` of each class,
by `data.validation_split`'s method, its own seeded draw), so its images never reach
training, validation, the head statistics or the activation cache. The validation split is
then drawn from what is left. Identical images across all three splits are found next and
reported, dropped or refused, as `data.duplicates` says (`tune.data.duplicates`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from tune.config.schema import DataConfig
from tune.data import duplicates
from tune.data.hashing import difference_hashes, pixel_digests
from tune.data.layout import relative_lines
from tune.data.scan import Scan
from tune.data.split import TEST, HoldOut, hold_out
from tune.errors import DataError

log = logging.getLogger("tune.data")


@dataclass
class Part:
    """One split: some usable images of a scan.

    Attributes:
        scan: the folder's scan.
        positions: int64 `(n,)` positions into `scan.rows`, `scan.labels` and `scan.files`,
            in pipeline order.
    """

    scan: Scan
    positions: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        """int64 `(n,)` rows of `scan.images`."""
        return self.scan.rows[self.positions]

    @property
    def labels(self) -> np.ndarray:
        """int32 `(n,)` in [0, classes)."""
        return self.scan.labels[self.positions]

    @property
    def files(self) -> List[str]:
        """The images' paths."""
        return [self.scan.files[i] for i in self.positions]


@dataclass
class Partition:
    """The three splits and what was found among them.

    Attributes:
        train, validation, test: the splits (after `data.duplicates=drop`, if set).
        duplicates: the counts of `tune.data.duplicates.find_duplicates`, plus
            `duplicates_dropped` (images) under `data.duplicates=drop`.
        duplicate_rows: rows of `data/duplicates.csv`: group, split, class, path relative to
            `data.root`.
    """

    train: Part
    validation: Part
    test: Part
    duplicates: Dict[str, int]
    duplicate_rows: List[list]


def _names(scan: Scan) -> List[str]:
    return [Path(f).name for f in scan.files]


def _hashes(scan: Scan, method: str) -> Optional[np.ndarray]:
    return difference_hashes(scan.images, scan.rows) if method == "groups" else None


def _draw(folder: Scan, test: Optional[Scan], cfg: DataConfig) -> List[Part]:
    """[training, validation, test] before duplicates are handled."""
    hashes, names = _hashes(folder, cfg.validation_split), _names(folder)
    rest = np.arange(len(folder.rows))
    if test is None:
        needs = "one each for training, validation and test (data.test_dir=null)"
        carve = HoldOut(cfg.validation_split, cfg.test_fraction, cfg.seed, TEST, 2, cfg.group_distance, "test", needs)
        rest, held = hold_out(folder.labels, folder.classes, names, carve, str(folder.folder), hashes)
        test_part = Part(folder, held)
    else:
        test_part = Part(test, np.arange(len(test.rows)))
    rule = HoldOut(cfg.validation_split, cfg.validation_fraction, cfg.seed, distance=cfg.group_distance)
    kept, held = hold_out(
        folder.labels[rest], folder.classes, [names[i] for i in rest], rule, str(folder.folder),
        None if hashes is None else hashes[rest],
    )  # fmt: skip
    return [Part(folder, rest[kept]), Part(folder, rest[held]), test_part]


def _check_left(parts: List[Part], classes: List[str]) -> None:
    """Every class keeps a training and a validation image after dropping duplicates."""
    for part, what in zip(parts[:2], ("training", "validation")):
        missing = sorted(set(classes) - {classes[i] for i in part.labels})
        if missing:
            raise DataError(
                f"after data.duplicates=drop, class(es) {missing} have no {what} image left; "
                "expected at least one: remove the copies by hand, or use data.duplicates=report"
            )


def _table(parts: List[Part], root: str) -> tuple:
    """Every image of `parts` in order: (pixel digests, split indices, labels, paths relative to `root`)."""
    digests = {id(p.scan): pixel_digests(p.scan.images, p.scan.rows) for p in parts}  # once a scan
    digest = np.concatenate([digests[id(p.scan)][p.positions] for p in parts])
    splits = np.concatenate([np.full(len(p.positions), n) for n, p in enumerate(parts)])
    labels = np.concatenate([p.labels for p in parts])
    return digest, splits, labels, relative_lines(root, [f for p in parts for f in p.files])


def _without(parts: List[Part], dropped: np.ndarray) -> List[Part]:
    """`parts` less the images at `dropped` (positions into all of them, in order)."""
    starts = np.cumsum([0] + [len(p.positions) for p in parts])
    return [
        Part(p.scan, np.delete(p.positions, dropped[(dropped >= a) & (dropped < b)] - a))
        for p, a, b in zip(parts, starts, starts[1:])
    ]


def _handle(parts: List[Part], cfg: DataConfig) -> tuple:
    """Find identical images across `parts` and apply `cfg.duplicates`: (parts, counts, csv rows)."""
    digest, splits, labels, paths = _table(parts, cfg.root)
    found = duplicates.find_duplicates(digest, splits, labels)
    classes = parts[0].scan.classes
    rows = duplicates.listing(found, splits, [classes[i] for i in labels], paths)
    counts = dict(found.counts)
    if not found.groups:
        return parts, counts, rows
    if cfg.duplicates == "error":
        duplicates.refuse(found, splits, paths)
    outcome = "kept (data.duplicates=report)"
    if cfg.duplicates == "drop":
        dropped = duplicates.to_drop(found, splits, labels)
        parts, counts["duplicates_dropped"] = _without(parts, dropped), len(dropped)
        outcome = f"{len(dropped)} copies dropped (data.duplicates=drop)"
        _check_left(parts, classes)
    log.warning("identical images: %s; %s; listed in data/duplicates.csv", duplicates.describe(counts), outcome)
    return parts, counts, rows


def partition(folder: Scan, test: Optional[Scan], cfg: DataConfig) -> Partition:
    """Split the scanned images three ways, then handle their duplicates.

    Args:
        folder: the scan of `<root>/<train_dir>`.
        test: the scan of `<root>/<test_dir>`; None carves the test split out of `folder`.
        cfg: the data settings (fractions, methods, seed, duplicate policy, root).

    Raises:
        DataError: a class too small to split, one group of near-duplicates, identical
            images under `data.duplicates=error`, or a class left without training or
            validation images by `data.duplicates=drop`.
    """
    parts, counts, rows = _handle(_draw(folder, test, cfg), cfg)
    return Partition(*parts, duplicates=counts, duplicate_rows=rows)
