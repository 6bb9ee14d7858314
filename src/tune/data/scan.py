"""Every file of an image folder checked before training: what is a class, what is usable.

The layout is `<folder>/<class>/<file>`. Class folders are the non-hidden subfolders, junk
folders (`__MACOSX`, `.ipynb_checkpoints`, any name starting with ".") left out. Only files
directly inside a class folder are read; each one is either usable (decoded by
`tune.data.images.read_image` without error) or skipped with a reason:

- ignored, never an error: hidden or system files (`.DS_Store`, `._*`, `Thumbs.db`,
  `desktop.ini`), junk folders, loose files next to the class folders;
- bad, an error under `data.bad_files=error`: an unsupported extension, an empty file, a
  file that fails to decode (truncated, not an image, too large), a subfolder of a class
  folder (its files are not read).

Decoding fills the cache of `tune.data.cache`, so a later scan of unchanged files decodes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from tune.data.cache import cache_key, decoded_images
from tune.data.entries import check_entries
from tune.data.images import MAX_PIXELS
from tune.errors import DataError
from tune.files import short_hash

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # any letter case
JUNK_FOLDERS = ("__MACOSX", ".ipynb_checkpoints")  # and any name starting with "."
SYSTEM_FILES = ("thumbs.db", "desktop.ini", "ehthumbs.db")  # any letter case; and names starting with "."
HIDDEN = "hidden or system file"
SHOWN = 10  # bad files named in the error of data.bad_files=error


@dataclass(frozen=True)
class Skipped:
    """A file or folder left out of the data.

    Attributes:
        split: "train" or "test".
        path: the file or folder.
        reason: why, e.g. "empty file (0 bytes)".
        bad: whether it counts under `data.bad_files=error` (False for hidden and junk).
    """

    split: str
    path: str
    reason: str
    bad: bool = True


@dataclass
class Listing:
    """What a folder holds, by names and sizes alone (nothing decoded).

    Attributes:
        folder: the scanned folder.
        split: "train" or "test".
        classes: class folder names, sorted.
        entries: (relative path "<class>/<file>", bytes, mtime in ns) of each file to decode,
            sorted by class then name (or listed: a path whose parent folder is the class,
            see `tune.data.layout.list_split_file`).
        skipped: what was left out already.
    """

    folder: Path
    split: str
    classes: List[str]
    entries: List[Tuple[str, int, int]]
    skipped: List[Skipped]


@dataclass
class Scan:
    """The usable images of a folder.

    Attributes:
        folder, split, classes: as in `Listing`.
        images: uint8 `(rows, height, width, 3)` RGB in [0, 255], usually memory-mapped;
            includes zero rows of files that failed to decode.
        rows: int64 `(n,)`, the row of `images` of each usable file.
        labels: int32 `(n,)` in [0, len(classes)), the class of each usable file.
        files: the path of each usable file.
        skipped: files and folders left out, with reasons.
        fingerprint: 16 hex digits over the classes and each usable file's relative path,
            bytes and mtime.
    """

    folder: Path
    split: str
    classes: List[str]
    images: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    files: List[str]
    skipped: List[Skipped]
    fingerprint: str


def _is_junk_folder(name: str) -> bool:
    return name.startswith(".") or name in JUNK_FOLDERS


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FILES


def _outside_class(entry: os.DirEntry) -> str:
    """Why an entry of the top folder is not a class."""
    if entry.is_dir():
        return "junk folder, not a class"
    return HIDDEN if _is_hidden(entry.name) else "not inside a class folder"


def _problem(entry: os.DirEntry) -> Optional[Tuple[str, bool]]:
    """(reason, bad) when a class folder's entry is not a file to decode, else None."""
    if entry.is_dir():
        if _is_junk_folder(entry.name):
            return "junk folder, not read", False
        return "subfolder, not read: only files directly inside a class folder are used", True
    if _is_hidden(entry.name):
        return HIDDEN, False
    extension = os.path.splitext(entry.name)[1]
    if extension.lower() not in EXTENSIONS:
        return f"unsupported file type '{extension}'" if extension else "unsupported file type (no extension)", True
    try:
        size = entry.stat().st_size
    except OSError as err:  # a broken link, a file removed while scanning
        return f"cannot be read: {err.strerror}", True
    return ("empty file (0 bytes)", True) if size == 0 else None


def _sorted_entries(folder: Path) -> List[os.DirEntry]:
    with os.scandir(folder) as entries:
        return sorted(entries, key=lambda e: e.name)


def list_folder(folder: Path, split: str) -> Listing:
    """List the classes and files of `folder`, without decoding anything.

    Links to folders and files are followed.

    Raises:
        DataError: `folder` does not exist or has fewer than two class folders; a name in it
            or in a class folder is not valid UTF-8, or is a broken link.
    """
    if not folder.is_dir():
        raise DataError(f"image folder '{folder}' does not exist; expected <class>/* folders there")
    top = _sorted_entries(folder)
    check_entries(folder, top)
    classes = [e.name for e in top if e.is_dir() and not _is_junk_folder(e.name)]
    if len(classes) < 2:
        raise DataError(f"'{folder}' holds {len(classes)} class folder(s) {classes}; expected at least 2")
    skipped = [Skipped(split, e.path, _outside_class(e), False) for e in top if e.name not in classes]
    entries = []
    for name in classes:
        inside = _sorted_entries(folder / name)
        check_entries(folder / name, inside)
        for entry in inside:
            problem = _problem(entry)
            if problem is not None:
                skipped.append(Skipped(split, entry.path, *problem))
            else:
                stat = entry.stat()
                entries.append((f"{name}/{entry.name}", stat.st_size, stat.st_mtime_ns))
    return Listing(folder, split, classes, entries, skipped)


def _check_bad(listing: Listing, skipped: List[Skipped]) -> None:
    """Raise the error of `data.bad_files=error` when any skipped entry is bad."""
    bad = [s for s in skipped if s.bad]
    if bad:
        lines = "".join(f"\n  {s.path}: {s.reason}" for s in bad[:SHOWN])
        more = f"\n  ... and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        raise DataError(
            f"{len(bad)} file(s) in '{listing.folder}' cannot be used (data.bad_files=error); "
            f"fix or remove them, or set data.bad_files=skip to leave them out:{lines}{more}"
        )


def _check_classes(listing: Listing, labels: np.ndarray, skipped: List[Skipped]) -> None:
    """Raise when a class folder has no usable image."""
    for index, name in enumerate(listing.classes):
        if not np.any(labels == index):
            folder = listing.folder / name
            left_out = sum(Path(s.path).parent == folder for s in skipped)
            raise DataError(
                f"class folder '{folder}' has no usable image ({left_out} file(s) skipped); "
                f"expected at least one {'/'.join(EXTENSIONS)} file that decodes"
            )


def scan_folder(
    listing: Listing,
    size: Tuple[int, int],
    cache_dir: Optional[Path],
    max_pixels: int = MAX_PIXELS,
    bad_files: str = "skip",
) -> Scan:
    """Decode every listed file (or take it from the cache) and apply the bad-file policy.

    Args:
        listing: from `list_folder`.
        size: (height, width) in pixels the images are resized to.
        cache_dir: the decoded-image cache folder; None keeps nothing on disk.
        max_pixels: larger images (width x height) are bad files.
        bad_files: "skip" leaves bad files out (listed in `skipped`); "error" raises.

    Raises:
        DataError: a bad file under `bad_files="error"`, or a class folder with no usable
            image (either policy).
    """
    files = [e[0] for e in listing.entries]
    key = cache_key(listing.entries, size, max_pixels)
    images, unreadable = decoded_images(listing.folder, files, key, size, max_pixels, cache_dir)
    failed = [Skipped(listing.split, str(listing.folder / f), r) for f, r in unreadable.items()]
    skipped = sorted(listing.skipped + failed, key=lambda s: s.path)
    if bad_files == "error":
        _check_bad(listing, skipped)
    rows = np.array([i for i, f in enumerate(files) if f not in unreadable], np.int64)
    class_index = {name: i for i, name in enumerate(listing.classes)}
    labels = np.array([class_index[files[i].rsplit("/", 2)[-2]] for i in rows], np.int32)  # the parent folder
    _check_classes(listing, labels, skipped)
    usable = [listing.entries[i] for i in rows]
    return Scan(
        folder=listing.folder,
        split=listing.split,
        classes=listing.classes,
        images=images,
        rows=rows,
        labels=labels,
        files=[str(listing.folder / e[0]) for e in usable],
        skipped=skipped,
        fingerprint=short_hash([listing.classes, usable]),
    )
