"""Identical images across a sweep's splits and classes, found before any trial.

Images are compared by the digest of their decoded pixels (`tune.data.hashing.pixel_digests`),
so a byte copy, or the same picture saved under another name or format, is found. A group
is two or more images with equal pixels. Each group counts (a group can count in several):

- `duplicates_within_split`: two of its copies are in the same split;
- `duplicates_across_splits`: its copies lie in two or more of training, validation and test
  (the model is scored on an image it trained on, or picked by one);
- `duplicates_across_classes`: its copies carry two or more labels (a label conflict).

`data.duplicates` decides what follows: `report` warns and lists them, `drop` keeps one copy
of each group (the first in the earliest split: training, then validation, then test) and
drops every copy of a group that spans classes (its label is unknown), `error` stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from tune.errors import DataError

POLICIES = ("report", "drop", "error")
SPLITS = ("train", "validation", "test")  # the order a copy is kept in
SHOWN = 10  # groups named in the error of data.duplicates=error


@dataclass
class Duplicates:
    """The groups of identical images among a sweep's images.

    Attributes:
        groups: each group's positions into the images compared, in their order.
        counts: `duplicates_within_split`, `duplicates_across_splits` and
            `duplicates_across_classes`, in groups (see the module's docstring).
    """

    groups: List[np.ndarray]
    counts: Dict[str, int]


def find_duplicates(digests: np.ndarray, splits: np.ndarray, labels: np.ndarray) -> Duplicates:
    """Group the images by digest and count the groups.

    Args:
        digests: `(n,)` each image's pixel digest (equal pixels, equal digests).
        splits: int `(n,)`, each image's split: an index into `SPLITS`.
        labels: int `(n,)`, each image's class.
    """
    _, inverse, sizes = np.unique(digests, return_inverse=True, return_counts=True)
    groups = [np.flatnonzero(inverse == g) for g in np.flatnonzero(sizes > 1)]
    groups.sort(key=lambda members: members[0])
    counts = {
        "duplicates_within_split": sum(len(np.unique(splits[g])) < len(g) for g in groups),
        "duplicates_across_splits": sum(len(np.unique(splits[g])) > 1 for g in groups),
        "duplicates_across_classes": sum(len(np.unique(labels[g])) > 1 for g in groups),
    }
    return Duplicates(groups, {k: int(v) for k, v in counts.items()})


def to_drop(found: Duplicates, splits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Positions `data.duplicates=drop` removes, sorted.

    All but one copy of each group: the one kept is the first in the earliest split
    (training, then validation, then test; images are in pipeline order within a split).
    Every copy of a group whose copies carry different labels.
    """
    dropped = [np.zeros(0, np.int64)]
    for group in found.groups:
        if len(np.unique(labels[group])) > 1:
            dropped.append(group)
        else:
            first = group[np.lexsort((group, splits[group]))[0]]
            dropped.append(group[group != first])
    return np.sort(np.concatenate(dropped))


def listing(found: Duplicates, splits: np.ndarray, class_of: Sequence[str], paths: Sequence[str]) -> List[list]:
    """Rows of `data/duplicates.csv`: group (from 1), split, class (`class_of` each image's), path; one a copy."""
    return [[n, SPLITS[splits[i]], class_of[i], paths[i]] for n, group in enumerate(found.groups, 1) for i in group]


def describe(counts: Dict[str, int]) -> str:
    """e.g. "0 within a split, 1 across splits, 0 across classes"."""
    return (
        f"{counts['duplicates_within_split']} within a split, {counts['duplicates_across_splits']} across splits, "
        f"{counts['duplicates_across_classes']} across classes"
    )


def refuse(found: Duplicates, splits: np.ndarray, paths: Sequence[str]) -> None:
    """The error of `data.duplicates=error`, naming the files of up to `SHOWN` groups.

    Raises:
        DataError: always.
    """
    lines = "".join(
        f"\n  {n}: " + ", ".join(f"{paths[i]} ({SPLITS[splits[i]]})" for i in group)
        for n, group in enumerate(found.groups[:SHOWN], 1)
    )
    more = f"\n  ... and {len(found.groups) - SHOWN} more" if len(found.groups) > SHOWN else ""
    raise DataError(
        f"{len(found.groups)} group(s) of identical images ({describe(found.counts)}) (data.duplicates=error); "
        f"remove the copies, or set data.duplicates=drop or report:{lines}{more}"
    )
