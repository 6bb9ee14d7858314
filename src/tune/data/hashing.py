"""Fingerprints of decoded images: exact copies and near copies.

- `pixel_digests`: a 128-bit BLAKE2b digest of each decoded, resized image's bytes; two
  files with the same digest give the model the same pixels (a byte copy, or the same
  picture saved twice), whatever their names and formats.
- `difference_hashes`: a 64-bit difference hash (dHash) of each image: grayscale, shrunk by
  area averaging to 8 rows x 9 columns, one bit a row and column for "brighter than its
  left neighbour". A shifted, re-encoded or slightly brighter copy differs in a few bits;
  unrelated images in about 32.
- `near_groups`: images whose hashes differ in at most `distance` bits, joined transitively
  (connected components).
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tune.files import take_rows

_CHUNK = 1024  # rows read from the (memory-mapped) images at a time
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as PIL's convert("L")
HASH_SHAPE = (8, 9)  # rows, columns of the shrunk grayscale image


def _chunks(images: np.ndarray, rows: np.ndarray) -> Iterator[np.ndarray]:
    """`images[rows]` in chunks of `_CHUNK`, each copied out of the memory map."""
    for start in range(0, len(rows), _CHUNK):
        yield take_rows(images, rows[start : start + _CHUNK])


def pixel_digests(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The BLAKE2b-128 digest of each row's bytes.

    Args:
        images: uint8 `(any, h, w, 3)`, usually memory-mapped.
        rows: int64 `(n,)`, the rows to digest.

    Returns:
        bytes `(n,)` (dtype "S16"); equal exactly when the decoded pixels are equal (up to
        a 2**-128 chance).
    """
    digests = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for c in _chunks(images, rows) for row in c]
    return np.array(digests, dtype="S16")


def _area_weights(size: int, bins: int) -> np.ndarray:
    """float64 `(bins, size)`: the share of each source pixel in each of `bins` equal bins."""
    edges = np.linspace(0, size, bins + 1)
    pixels = np.arange(size)
    overlap = np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels)
    return np.clip(overlap, 0, None) / (size / bins)


def difference_hashes(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The 64-bit difference hash of each row.

    Args:
        images: uint8 `(any, h, w, 3)` RGB, usually memory-mapped.
        rows: int64 `(n,)`, the rows to hash.

    Returns:
        uint64 `(n,)`; bit 8 x r + c (most significant first) is set when cell (r, c + 1)
        of the 8 x 9 grayscale shrink is brighter than cell (r, c).
    """
    height, width = images.shape[1:3]
    down, across = _area_weights(height, HASH_SHAPE[0]), _area_weights(width, HASH_SHAPE[1])
    hashes = [np.zeros(0, np.uint64)]
    for chunk in _chunks(images, rows):
        gray = chunk @ _LUMA  # (n, h, w) float64
        small = (down @ gray @ across.T).round(6)  # (n, 8, 9); rounding evens out float ties
        bits = np.packbits(small[:, :, 1:] > small[:, :, :-1], axis=None).reshape(len(chunk), 8)
        hashes.append(bits.view(">u8").ravel().astype(np.uint64))
    return np.concatenate(hashes)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Differing bits of each pair, int `(len(a), len(b))`, of uint64 hashes `a` and `b`."""
    return np.bitwise_count(a[:, None] ^ b[None, :])


def near_groups(hashes: np.ndarray, distance: int) -> np.ndarray:
    """Group labels: images whose hashes differ in at most `distance` bits share one, transitively.

    Args:
        hashes: uint64 `(n,)`, from `difference_hashes`.
        distance: the most differing bits of a pair joined, in 0..64.

    Returns:
        int `(n,)` labels in [0, number of groups), numbered by first appearance.
    """
    pairs = []
    for start in range(0, len(hashes), _CHUNK):
        near = np.argwhere(hamming(hashes[start : start + _CHUNK], hashes) <= distance)
        pairs.append(near + [start, 0])
    edges = np.concatenate(pairs) if pairs else np.zeros((0, 2), int)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(hashes),) * 2)
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))  # the component seen first gets 0
    return order[labels]
