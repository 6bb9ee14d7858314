"""Decoded images on disk: every file of a folder decoded once, reused while nothing changes.

A cache entry is two files in the cache folder, named by a key over the decoded files
(relative path, size in bytes, modification time in ns), the image size and the pixel limit:

- `<key>.npy`: uint8 `(files, height, width, 3)`, one row a file in the order given, written
  with `np.lib.format.open_memmap` and read back memory-mapped, so it is never whole in RAM;
  a row stays zero where the file could not be decoded.
- `<key>.json`: the files that could not be decoded, with the reason; written last, so an
  entry without it is incomplete and is rebuilt.

Both are written under a temporary name and renamed into place, so a killed run leaves no
half entry that is later trusted. An entry is read or filled under an exclusive lock on
`<key>.lock`, so of several processes started together (a chief and its workers) one
decodes the files and the others wait and read its entry.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tune.data.images import read_image
from tune.errors import ImageError
from tune.files import exclusive_lock, read_json, release_pages, replacing, short_hash, write_json

FORMAT = 1  # bump when `read_image` changes its pixels, so older entries are not reused
_CHUNK = 1024  # files submitted to the decoding threads at a time


def cache_key(entries: Sequence[Tuple[str, int, int]], size: Tuple[int, int], max_pixels: int) -> str:
    """A 24-hex-digit key for decoding `entries` (relative path, bytes, mtime in ns) at `size`."""
    return short_hash([FORMAT, list(size), max_pixels, [list(e) for e in entries]], digits=24)


def _read(cache_dir: Path, key: str, count: int, size: Tuple[int, int]) -> Optional[tuple]:
    """(images memory-mapped, unreadable) of a complete entry of the expected shape, else None."""
    report = read_json(cache_dir / f"{key}.json")
    try:
        images = np.load(cache_dir / f"{key}.npy", mmap_mode="r")
    except (OSError, ValueError):  # absent, or cut short by a crash
        return None
    if report is None or report.get("key") != key or images.dtype != np.uint8 or images.shape != (count, *size, 3):
        return None
    return images, report["unreadable"]


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar of files decoded, on stderr; yields the function that advances it."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("files"))
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def _decode_all(folder: Path, files: List[str], size: Tuple[int, int], max_pixels: int, out: np.ndarray) -> dict:
    """Decode `folder/files[i]` into `out[i]` on threads; relative path -> reason for failures."""

    def decode(i: int) -> Optional[str]:
        try:
            out[i] = read_image(folder / files[i], size, max_pixels)
        except ImageError as err:
            return err.reason
        return None

    unreadable: Dict[str, str] = {}
    progress = _progress(f"scanning {folder.name}", len(files))
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool, progress as step:
        for start in range(0, len(files), _CHUNK):
            rows = range(start, min(start + _CHUNK, len(files)))
            for i, reason in zip(rows, pool.map(decode, rows)):
                if reason is not None:
                    unreadable[files[i]] = reason
                step()
            release_pages(out)  # the decoded rows stay in the page cache, not in this process
    return unreadable


def _build(cache_dir: Path, key: str, folder: Path, files: List[str], size, max_pixels) -> tuple:
    """Decode every file into a new entry `key` and return it as `_read` would."""
    final = cache_dir / f"{key}.npy"
    with replacing(final) as temporary:
        images = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=(len(files), *size, 3))
        unreadable = _decode_all(folder, files, size, max_pixels, images)
        images.flush()
        del images
    report = dict(key=key, folder=str(folder), size=list(size), max_pixels=max_pixels, unreadable=unreadable)
    write_json(cache_dir / f"{key}.json", report)
    return np.load(final, mmap_mode="r"), unreadable


def decoded_images(
    folder: Path, files: List[str], key: str, size: Tuple[int, int], max_pixels: int, cache_dir: Optional[Path]
) -> Tuple[np.ndarray, Dict[str, str]]:
    """Every file of `files` decoded with `read_image`, from the cache when it holds entry `key`.

    Args:
        folder: the folder `files` are relative to.
        files: relative paths, e.g. "Apple Red 1/0_100.jpg".
        key: `cache_key` of the files' entries, `size` and `max_pixels`.
        size: (height, width) in pixels.
        max_pixels: larger images (width x height) are unreadable.
        cache_dir: where entries are kept; None decodes into memory and keeps nothing.

    Returns:
        (images uint8 `(len(files), height, width, 3)` RGB in [0, 255], memory-mapped when
        cached; relative path -> reason, for the files that could not be decoded, whose
        rows are zero).
    """
    if cache_dir is None or not files:
        images = np.zeros((len(files), *size, 3), np.uint8)
        return images, _decode_all(folder, files, size, max_pixels, images) if files else {}
    with exclusive_lock(cache_dir / f"{key}.lock"):  # processes started together: one decodes, the others read
        found = _read(cache_dir, key, len(files), size)
        return found if found is not None else _build(cache_dir, key, folder, files, size, max_pixels)
