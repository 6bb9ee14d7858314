"""Holding out part of each class: the validation split, and the test split carved out of one folder.

Each class holds out round(fraction x its images), at least 1 and leaving at least
`keep` behind, drawn with a generator seeded by the seed, the class name and the stage, so
a class's split does not change when another class's files do. Three methods
(`data.validation_split`):

- random: any images of the class;
- blocks: one contiguous run of the class's files sorted by name (numbers in names compared
  as numbers), at a seeded start, so neighbouring video frames (`r_12_100.jpg`,
  `r_13_100.jpg`) stay on one side;
- groups: near-duplicates (`tune.data.hashing.near_groups`) stay on one side: whole groups
  are drawn, in seeded order, while they bring the count nearer the target.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tune.data.hashing import near_groups
from tune.errors import DataError

SPLIT_METHODS = ("random", "blocks", "groups")
VALIDATION, TEST = 0, 1  # stages: the validation split, the test carve


@dataclass(frozen=True)
class HoldOut:
    """How one split is held out of a folder's images.

    Attributes:
        method: "random", "blocks" or "groups".
        fraction: share of each class held out, in (0, 1).
        seed: the draw's seed.
        stage: VALIDATION or TEST; each stage draws with its own generator.
        keep: images of each class that must stay behind, at least 1.
        distance: groups only: the most differing bits of two near-duplicates' hashes.
        what: the split's name in errors, e.g. "validation".
        needs: what a class needs the images for, in errors.
    """

    method: str
    fraction: float
    seed: int
    stage: int = VALIDATION
    keep: int = 1
    distance: int = 6
    what: str = "validation"
    needs: str = "one for training and one for validation"


def _natural(name: str) -> list:
    """A sort key comparing the digit runs of a name as numbers: r_9 before r_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _random(count: int, target: int, rng, names, hashes, rule: HoldOut) -> np.ndarray:
    return rng.permutation(count)[:target]


def _blocks(count: int, target: int, rng, names, hashes, rule: HoldOut) -> np.ndarray:
    order = sorted(range(count), key=lambda i: _natural(names[i]))
    start = int(rng.integers(0, count - target + 1))
    return np.array(order[start : start + target], np.int64)


def _groups(count: int, target: int, rng, names, hashes, rule: HoldOut) -> np.ndarray:
    labels = near_groups(hashes, rule.distance)
    sizes = np.bincount(labels)
    chosen, held = [], 0
    for group in rng.permutation(len(sizes)):
        size = int(sizes[group])
        if held + size <= count - rule.keep and (held == 0 or abs(held + size - target) < abs(held - target)):
            chosen.append(group)
            held += size
    return np.flatnonzero(np.isin(labels, chosen))


METHODS: Dict[str, Callable[..., np.ndarray]] = {"random": _random, "blocks": _blocks, "groups": _groups}


def _check_count(folder: str, name: str, count: int, rule: HoldOut) -> None:
    if count < rule.keep + 1:
        raise DataError(
            f"class folder '{folder}/{name}' has {count} usable image(s); expected at least {rule.keep + 1}, "
            f"{rule.needs}"
        )


def _held_of_class(name: str, names: List[str], hashes: Optional[np.ndarray], rule: HoldOut, folder: str):
    """Positions (into `names`) of one class's held-out images."""
    count = len(names)
    _check_count(folder, name, count, rule)
    target = min(count - rule.keep, max(1, round(rule.fraction * count)))
    key = [rule.seed, zlib.crc32(name.encode())] + ([rule.stage] if rule.stage != VALIDATION else [])
    held = METHODS[rule.method](count, target, np.random.default_rng(key), names, hashes, rule)
    if len(held) == 0:
        raise DataError(
            f"class folder '{folder}/{name}': its {count} images form one group of near-duplicates "
            f"(data.group_distance={rule.distance}), so none can be held out for {rule.what}; "
            "lower data.group_distance, or use data.validation_split=blocks (frames of a video chain into one "
            "group) or random"
        )
    return held


def hold_out(
    labels: np.ndarray,
    classes: Sequence[str],
    names: Sequence[str],
    rule: HoldOut,
    folder: str,
    hashes: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """(kept, held) positions into `labels`, both sorted; every class on both sides.

    Args:
        labels: int32 `(n,)` in [0, len(classes)), each image's class.
        classes: the class names.
        names: `(n,)` each image's file name (blocks sort by it).
        rule: the method, fraction, seed and stage.
        folder: the folder the images come from, for errors.
        hashes: uint64 `(n,)` difference hashes; required by "groups".

    Raises:
        DataError: a class has fewer than `rule.keep + 1` images, or (groups) its images
            form one group.
    """
    kept, held = [], []
    for index, name in enumerate(classes):
        positions = np.flatnonzero(labels == index)
        members = [names[i] for i in positions]
        group_hashes = hashes[positions] if hashes is not None else None
        chosen = np.zeros(len(positions), bool)
        chosen[_held_of_class(name, members, group_hashes, rule, folder)] = True
        held.append(positions[chosen])
        kept.append(positions[~chosen])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))
