"""Where a sweep's splits come from, and how a split's files are written down.

Two layouts:

- split folders: `<root>/<train_dir>/<class>/*` and `<root>/<test_dir>/<class>/*`; the
  validation split is drawn from the training folder;
- one folder (`data.test_dir: null`, preset `data=one_folder`): `<root>/<train_dir>/<class>/*`,
  `train_dir` "." being the root itself; the test split is carved out of it first, then the
  validation split is drawn from the rest.

A split is recorded as text, one file a line, relative to `data.root` with "/" separators
(`Test/apple/r_12.jpg`, or `apple/r_12.jpg` for one folder), in pipeline order; a line's class
is the name of its parent folder.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import List, Optional

from tune.data.scan import Listing
from tune.errors import ConfigError, DataError

SPLIT_FOLDERS = "split folders"  # values of the sweep run's tag tune.data.layout
ONE_FOLDER = "one folder"


def layout_name(test_dir: Optional[str]) -> str:
    """ "split folders" when there is a test folder, else "one folder"."""
    return ONE_FOLDER if test_dir is None else SPLIT_FOLDERS


def check_apart(root: str, train_dir: str, test_dir: Optional[str]) -> None:
    """Refuse a test folder that is the training folder or lies inside it, or holds it.

    Symbolic links are resolved first, so a link to the training folder is the same folder.

    Raises:
        ConfigError: naming both folders; the test images would be trained on.
    """
    if test_dir is None:
        return
    train, test = (Path(root, name).resolve() for name in (train_dir, test_dir))
    if train == test or train in test.parents or test in train.parents:
        raise ConfigError(
            f"data.train_dir='{train_dir}' ({train}) and data.test_dir='{test_dir}' ({test}) are the same folder "
            "or one holds the other, so the model would be tested on images it trained on; expected two separate "
            "folders, or data.test_dir=null to carve a test split out of one folder (data=one_folder)"
        )


def check_same_classes(train: Listing, test: Listing) -> List[str]:
    """The class names, after checking the test folder has exactly the training classes.

    Raises:
        DataError: the two class sets differ (both differences named).
    """
    if train.classes != test.classes:
        only_train, only_test = set(train.classes) - set(test.classes), set(test.classes) - set(train.classes)
        raise DataError(
            f"class folders differ between '{train.folder}' and '{test.folder}': only in training "
            f"{sorted(only_train)}, only in test {sorted(only_test)}"
        )
    return train.classes


def relative_lines(root: str, files: List[str]) -> List[str]:
    """Each file's path relative to `root`, with "/" separators, in the order given.

    Args:
        root: `data.root`.
        files: paths under `root`, e.g. "/data/fruits/Test/apple/r_12.jpg".

    Returns:
        e.g. ["Test/apple/r_12.jpg"].
    """
    return [Path(os.path.relpath(f, root)).as_posix() for f in files]


def lines_text(lines: List[str]) -> str:
    """The text of a split file: one line a file, each ending in a newline."""
    return "".join(f"{line}\n" for line in lines)


def list_split_file(root: str, lines: List[str], class_names: List[str], split: str = "test") -> Listing:
    """The files a split file names, as a listing `tune.data.scan.scan_folder` decodes like a folder's.

    Args:
        root: `data.root` the lines are relative to.
        lines: the split file's lines, e.g. ["Test/apple/r_12.jpg"], in the order to keep.
        class_names: the model's classes; a line's class is its parent folder's name.
        split: the split's name, for errors and skipped files.

    Raises:
        DataError: a listed file cannot be read, or its class is not one of `class_names`.
    """
    entries = []
    for line in lines:
        path = Path(root, line)
        if PurePosixPath(line).parent.name not in class_names:
            raise DataError(f"'{line}' of {split}_files.txt is in folder '{PurePosixPath(line).parent.name}'; "
                            f"expected one of the model's classes {list(class_names)}")  # fmt: skip
        try:
            stat = path.stat()
        except OSError as err:
            raise DataError(f"'{path}' of {split}_files.txt cannot be read: {err.strerror}; expected the file "
                            f"the sweep recorded, under data.root='{root}'") from None  # fmt: skip
        entries.append((line, stat.st_size, stat.st_mtime_ns))
    return Listing(Path(root), split, list(class_names), entries, [])
