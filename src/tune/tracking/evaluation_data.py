"""The test images `tune.promote` scores a version on: those its sweep recorded, without repeating its overrides.

A sweep run logs its `data.*` settings as params (`data.root`, `data.test_dir`, ...) and,
when the sweep decided its test split, the artifact `data/test_files.txt`: one path a line,
relative to `data.root`, "/" separators, the class of a line its parent folder's name. Both
versions of a promotion are scored on the challenger's run's test images: exactly the files
listed there, else (older runs) every file of `<data.root>/<data.test_dir>` as recorded.
`data.*` keys the user names on the promote command line win over the recorded ones. When
the recorded `data.root` is gone (the project moved with its images), the command's own
`data.root` is used, and said so.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import numpy as np
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tune.config.schema import DataConfig
from tune.errors import DataError, RegistryError
from tune.tracking.store import first_line

TEST_FILES = "data/test_files.txt"  # artifact of a sweep run
RECORDED = ("root", "train_dir", "test_dir", "bad_files", "max_image_pixels", "batch_size")  # data.* taken from a run
SHOWN = 5  # files named in one error


@dataclass
class EvaluationSet:
    """Where a promotion's test images come from.

    Attributes:
        data: the data settings (recorded, then the user's `data.*` overrides).
        files: paths relative to `data.root` ("/" separators), or None for every file of
            `<data.root>/<data.test_dir>`.
        source: in words, for the terminal.
    """

    data: DataConfig
    files: Optional[List[str]]
    source: str


def given_data_keys(overrides: Sequence[str]) -> FrozenSet[str]:
    """The `data.<key>` keys a command line sets directly (`data.root=x`, `+data.x=y`), without `data.`.

    Group choices (`data=fruits4`, `experiment=...`) name the store and model; they set no key here.
    """
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    keys = (o.key_or_group for o in parsed if o.key_or_group.startswith("data."))
    return frozenset(key.split(".")[1] for key in keys)


def recorded_data(params: Dict[str, str], data: DataConfig, given: FrozenSet[str]) -> DataConfig:
    """`data` with each key of `RECORDED` the run logged (`data.<key>` params), unless in `given`."""
    fields = {f.name: f.type for f in dataclasses.fields(DataConfig)}
    changes = {}
    for key in RECORDED:
        value = params.get(f"data.{key}")
        if value is not None and key not in given:
            changes[key] = int(value) if fields[key] in (int, "int") else value
    return dataclasses.replace(data, **changes)


def read_test_files(client: MlflowClient, run_id: str) -> Optional[List[str]]:
    """The lines of the run's `data/test_files.txt`, or None when the run has no such artifact.

    Raises:
        DataError: a line is absolute, climbs out with "..", or has no class folder.
    """
    try:
        listed = {a.path for a in client.list_artifacts(run_id, "data")}
        if TEST_FILES not in listed:
            return None
        with tempfile.TemporaryDirectory() as folder:
            text = Path(client.download_artifacts(run_id, TEST_FILES, folder)).read_text(encoding="utf-8")
    except (MlflowException, OSError) as err:
        raise RegistryError(f"cannot read {TEST_FILES} of run {run_id}: {first_line(err)}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        path = PurePosixPath(line)
        if path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
            raise DataError(
                f"{TEST_FILES} of run {run_id}: {line!r}; expected <folders>/<class>/<file> under data.root"
            )
    return lines


def recorded_test_set(client: MlflowClient, run_id: str, data: DataConfig, given: FrozenSet[str]) -> EvaluationSet:
    """The test images run `run_id` recorded (see the module); a run without params leaves `data` as it is.

    Raises:
        DataError: neither the recorded `data.root` nor `data`'s exists (naming the fix), or a
            line of `data/test_files.txt` is malformed.
        RegistryError: the run's artifacts cannot be read.
    """
    try:
        params = client.get_run(run_id).data.params
    except MlflowException:
        params = {}  # the run was deleted: the config's data
    recorded, note = recorded_data(params, data, given), ""
    missing = recorded.root != data.root and not Path(recorded.root).is_dir()
    if missing and Path(data.root).is_dir():  # the project moved with its images
        note = f" (the recorded data.root '{recorded.root}' is gone; this command's data.root is used)"
        recorded = dataclasses.replace(recorded, root=data.root)
    elif missing:
        raise DataError(
            f"run {run_id} recorded data.root='{recorded.root}', which does not exist; "
            "name where its images are now with data.root=PATH on this command line"
        )
    files = read_test_files(client, run_id) if params else None
    if files is None:
        return EvaluationSet(recorded, None, f"{recorded.root}/{recorded.test_dir}{note}")
    where = f"{len(files)} files of {TEST_FILES} (run {run_id}) under {recorded.root}{note}"
    return EvaluationSet(recorded, files, where)


def load_listed(test: EvaluationSet, size: Tuple[int, int], class_names: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    """The listed files decoded: (uint8 `(n, height, width, 3)` RGB in [0, 255], int32 labels `(n,)`).

    Raises:
        DataError: a file's class folder is not one of `class_names`, or a file is missing
            or does not decode (the recorded test set cannot be scored as it was).
    """
    from tune.data.cache import decoded_images

    index = {name: i for i, name in enumerate(class_names)}
    classes = [PurePosixPath(line).parent.name for line in test.files]
    unknown = sorted(set(classes) - set(index))
    if unknown:
        raise DataError(f"{TEST_FILES} lists classes {unknown[:SHOWN]} the model was not trained on {class_names}")
    root = Path(test.data.root)
    images, unreadable = decoded_images(root, test.files, "", size, test.data.max_image_pixels, None)
    if unreadable:
        named = ", ".join(f"'{root / f}': {reason}" for f, reason in list(unreadable.items())[:SHOWN])
        raise DataError(f"{len(unreadable)} test file(s) listed in {TEST_FILES} cannot be read: {named}")
    return images, np.array([index[c] for c in classes], np.int32)
