"""Small file-system habits shared by the caches, tuner projects and the MLflow store.

- `short_hash`: a stable hex key of any JSON-able value, for folder and file names.
- `replacing`, `write_text`: write under a temporary name, then rename into place, so a
  killed process never leaves a half-written file that a later run trusts, and readers in
  other processes see the old file or the new one, never a mix.
- `exclusive_lock`: an advisory `flock` held across processes, released when the holder
  closes it or dies (even by SIGKILL).
- `release_pages`, `take_rows`: keep a memory-mapped cache file's pages out of the resident
  size.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, TextIO

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no flock; locks are skipped there
    fcntl = None


def short_hash(value: Any, digits: int = 16) -> str:
    """The first `digits` hex digits of the SHA-256 of `value` as canonical JSON.

    Dict keys are sorted and values JSON cannot encode are written with `str`, so equal
    values give equal keys across processes and Python versions.
    """
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def temporary_beside(final: Path, suffix: str = "") -> Path:
    """A hidden name next to `final`, unique to this process and call, ending in `.tmp<suffix>`."""
    return final.with_name(f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{suffix}")


@contextmanager
def replacing(final: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to `final`, else removed.

    Args:
        final: the file to create or replace; its folder is created if missing.
        suffix: what the temporary name must end with, for writers that insist on one
            (Keras weights files: ".weights.h5").
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(final, suffix)
    try:
        yield temporary
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; return `path`."""
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: Path, value: Any) -> Path:
    """Write `value` as indented JSON to `path` atomically; return `path`."""
    return write_text(path, json.dumps(value, indent=1, ensure_ascii=False, default=str))


def read_json(path: Path) -> Optional[Any]:
    """The JSON value in `path`, or None when it is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class LockHeldError(Exception):
    """`exclusive_lock(..., wait=False)` found the lock held; `holder` is what it wrote."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"'{path}' is locked by {holder}")
        self.path, self.holder = path, holder


@contextmanager
def exclusive_lock(path: Path, wait: bool = True) -> Iterator[TextIO]:
    """Hold an exclusive `flock` on `path` (created, with its folder) while inside.

    The holder writes its process id into the file, so a refused caller can name it.

    Args:
        path: the lock file.
        wait: True blocks until the lock is free; False raises `LockHeldError` at once.

    Raises:
        LockHeldError: `wait` is False and another process holds the lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.seek(0)
                raise LockHeldError(path, f"pid {handle.read().strip() or 'unknown'}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield handle


def release_pages(array: Any) -> None:
    """Drop this process's resident pages of a memory-mapped array; its data stays in the file.

    Every page of a memory-mapped file that a process reads or writes counts in its resident
    size until the kernel runs short of memory, so reading a 3 GB image cache once leaves a
    3 GB process. `madvise(MADV_DONTNEED)` on the shared file mapping unmaps them: later reads
    fault them back from the page cache (a minor fault), and written pages stay dirty in the
    page cache until they are written back, so nothing is lost (Linux `madvise(2)`). Called
    after each batch is copied out of (or into) a cache file, it keeps the resident size to
    about one batch of it.

    Args:
        array: an `np.memmap` (or a view of one), as `np.load(..., mmap_mode=...)` and
            `np.lib.format.open_memmap` return; anything else, or a platform without
            `MADV_DONTNEED`, is left alone.
    """
    mapping = getattr(array, "_mmap", None)  # NumPy keeps the mapping here, shared by views
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED") and not mapping.closed:
        mapping.madvise(mmap.MADV_DONTNEED)


def take_rows(array: Any, rows: Any) -> np.ndarray:
    """A copy of `array[rows]`, then `release_pages(array)`: a batch read from a cache file.

    Args:
        array: an array, usually an `np.memmap`.
        rows: int `(n,)` row indices (any order) or a slice.

    Returns:
        An in-memory array of `array`'s dtype, `(n, *array.shape[1:])`.
    """
    batch = np.array(array[rows])
    release_pages(array)
    return batch
