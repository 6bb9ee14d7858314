"""Entries of an image folder that stop a scan at once: broken links and names that are not UTF-8.

Neither can be skipped like a bad file. A name that is not valid UTF-8 (bytes written by
another system's encoding, e.g. Latin-1 `caf\\xe9`) cannot be hashed, logged to MLflow or
written to a text artifact; a broken link to a class folder would silently drop that class,
and one to a file would silently drop that image. Working links, to folders and to files,
are followed like the folders and files they point at.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List

from tune.errors import DataError

SHOWN = 10  # entries named in one error


def shown(path: str) -> str:
    """`path` printable: bytes that are not UTF-8 written as `\\xNN`, e.g. `'/d/caf\\xe9'`."""
    return "'" + os.fsencode(path).decode("utf-8", "backslashreplace") + "'"


def is_utf8(name: str) -> bool:
    """Whether the file name `name` (as `os.fsdecode` gives it) was valid UTF-8 on disk."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates (PEP 383)
        return False
    return True


def is_broken_link(entry: os.DirEntry) -> bool:
    """Whether `entry` is a symbolic link whose target does not exist (or loops)."""
    return entry.is_symlink() and not os.path.exists(entry.path)


def _listed(paths: List[str], describe=shown) -> str:
    """The first `SHOWN` of `paths`, each as `describe` writes it, and how many more."""
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(describe(p) for p in paths[:SHOWN]) + more


def check_entries(folder: Path, entries: Iterable[os.DirEntry]) -> None:
    """Refuse names in `folder` that are not UTF-8, and broken links, naming every one.

    Args:
        folder: the folder listed (a split folder or a class folder), for the message.
        entries: its entries, from `os.scandir`. Hidden names (starting with ".") are
            checked for UTF-8 too (they are listed as ignored), not for broken links.

    Raises:
        DataError: one line naming the entries (undecodable bytes shown as `\\xNN`) and what
            to do: rename them to UTF-8, or fix or remove the links.
    """
    entries = list(entries)
    undecodable = [e.path for e in entries if not is_utf8(e.name)]
    if undecodable:
        raise DataError(
            f"{len(undecodable)} name(s) in {shown(str(folder))} are not valid UTF-8: {_listed(undecodable)}; "
            "rename them to UTF-8 (e.g. convmv -f latin1 -t utf8 --notest -r FOLDER)"
        )
    broken = [e.path for e in entries if not e.name.startswith(".") and is_broken_link(e)]
    if broken:
        targets = _listed(broken, lambda p: f"{shown(p)} -> {shown(os.readlink(p))}")
        raise DataError(
            f"{len(broken)} broken link(s) in {shown(str(folder))}, whose targets do not exist: {targets}; "
            "fix or remove them"
        )
