"""The tuner project of a search: one folder per search definition, locked while it runs.

keras-tuner reloads a project folder silently when asked not to overwrite it, whatever the
search now is. Here the folder's name is a key hashed from everything that defines the
search (data files, base model, search space, recipe, tuner, seed), so the same command
resumes its own trials, and any change to the search gets a new project. The definition is
kept in `search.json`, so a new project can say how it differs from the last one.

    <tuner_dir>/<key>/
      search.json        the definition, its key, the MLflow parent run it writes to, and
                         in chief/worker mode the address the chief serves its oracle on
                         (oracle_closed once its search has ended)
      .lock              held (flock) by the process running this search, or by its chief
      .lock.chief        held by a chief from before it records its address until it ends
      .lock.<tuner id>   held by each worker of the search (one process per tuner id)
      keras_tuner/       keras-tuner's project: oracle.json, trial_*/ (trial.json, checkpoints;
                         a finished search keeps only its best trial's checkpoint by default)
      bases/             random bases and the head's feature statistics
      trials/, sweep/    figures and tables, before they are logged to MLflow
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

from tune.errors import ConfigError, DistributedError, ProjectBusyError
from tune.files import LockHeldError, exclusive_lock, read_json, short_hash, write_json
from tune.search.roles import same_oracle

log = logging.getLogger(__name__)
KEY_DIGITS = 12  # hex digits of a project key


def differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """`key: old -> new` for every key whose value differs, sorted by key."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in keys if old.get(k) != new.get(k)]


class TunerProject:
    """The folder of one search definition. Open it with `open_project`, which locks it.

    Attributes:
        flat: the search definition, `dotted.key: "value"` pairs.
        key: the definition's key (12 hex digits), also the folder name.
        folder: `tuner_dir/key`.
        parent_run_id: the MLflow run this project writes to, if it ever started one.
        oracle: `ip:port` its chief serves the oracle on, once recorded; None otherwise.
        closed: its chief has stopped serving: every trial was handed out and has ended.
    """

    def __init__(self, tuner_dir: Path, flat: Dict[str, Any]):
        self.flat, self.key = flat, short_hash(flat, KEY_DIGITS)
        self.folder = Path(tuner_dir) / self.key
        self.parent_run_id: Optional[str] = None
        self.oracle: Optional[str] = None
        self.closed = False

    @property
    def keras_tuner_dir(self) -> Path:
        """keras-tuner's own project folder inside this one."""
        return self.folder / "keras_tuner"

    def save(self) -> None:
        """Write `search.json` (definition, key, parent run id, oracle address)."""
        record = {"key": self.key, "parent_run_id": self.parent_run_id, "oracle": self.oracle}
        write_json(self.folder / "search.json", {**record, "oracle_closed": self.closed, "definition": self.flat})

    def set_parent_run(self, run_id: str, oracle: Optional[str] = None) -> None:
        """Remember the MLflow parent run this project writes to, and the chief's `ip:port` if any.

        A chief records both at once, when its run is ready; its workers wait for that.
        """
        self.parent_run_id, self.oracle = run_id, oracle
        self.save()

    def close_oracle(self) -> None:
        """Record that the chief stopped serving, so a worker that comes later leaves at once."""
        self.closed = True
        self.save()

    def _load(self, fresh: bool) -> None:
        """Empty the folder when `fresh`; read `search.json`, or say how a new search differs."""
        if fresh:
            for entry in self.folder.iterdir():
                if not entry.name.startswith(".lock"):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        saved = read_json(self.folder / "search.json")
        self.parent_run_id = (saved or {}).get("parent_run_id")
        if saved is None:
            self._note_changes()
        self.save()

    def _note_changes(self) -> None:
        """Log how this new search differs from the most recent other project, if any."""
        others = sorted(self.folder.parent.glob("*/search.json"), key=lambda p: p.stat().st_mtime)
        others = [p for p in others if p.parent != self.folder]
        if not others:
            return
        changed = differences((read_json(others[-1]) or {}).get("definition", {}), self.flat)
        log.info(
            "new tuner project %s (the search differs from project %s in %s); earlier trials are not reused",
            self.key,
            others[-1].parent.name,
            "; ".join(changed[:8]) + (" ..." if len(changed) > 8 else ""),
        )


def delete_checkpoints(trial_dirs: Iterable[Path]) -> int:
    """Delete the weight checkpoints (`checkpoint*` files) in each keras-tuner trial folder.

    The rest stays: `trial.json` (the trial's values, status and score, which resume and
    `already finished` read) and `build_config.json`.

    Returns:
        Bytes freed.
    """
    freed = 0
    for folder in trial_dirs:
        for path in Path(folder).glob("checkpoint*"):
            if path.is_file():
                freed += path.stat().st_size
                path.unlink()
    return freed


@contextlib.contextmanager
def open_project(
    tuner_dir: Path, flat: Dict[str, Any], fresh: bool = False, chief: bool = False
) -> Iterator[TunerProject]:
    """The project of the search `flat` under `tuner_dir`, locked by this process while inside.

    Args:
        tuner_dir: the folder holding every project of an experiment.
        flat: the search definition, `dotted.key: "value"` pairs.
        fresh: start again: empty the folder of a previous run of the same search.
        chief: this process serves keras-tuner's oracle to workers (`join_project`); it
            also holds `.lock.chief`, which tells them a chief is alive, and the oracle
            address left in `search.json` by an earlier chief is forgotten.

    Raises:
        ProjectBusyError: another process holds the project's lock (a single-process run
            or a chief of the same search). The locks are released when this process
            leaves the block or ends, even by SIGKILL.
    """
    project = TunerProject(tuner_dir, flat)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(project.folder / ".lock", wait=False))
        except LockHeldError as held:
            raise ProjectBusyError(
                f"this search is already running in another process ({held.holder}); its tuner project "
                f"'{project.folder}' is locked. Wait for it, or change the search or tracking.experiment_name"
            ) from None
        project._load(fresh)
        if chief:
            stack.enter_context(exclusive_lock(project.folder / ".lock.chief"))  # a worker's probe: microseconds
        yield project


@contextlib.contextmanager
def join_project(
    tuner_dir: Path, flat: Dict[str, Any], tuner_id: str, address: str, timeout: float, poll: float = 1.0
) -> Iterator[TunerProject]:
    """The project of the search `flat`, as a worker of the chief serving at `address` sees it.

    Waits until a chief of the search is alive (it holds `.lock.chief`) and has recorded its
    parent run and oracle address in `search.json`, or has already stopped serving it
    (`closed`: nothing is left to do). Holds `.lock.<tuner_id>` while inside, so one tuner
    id is one process at a time; the project's own lock is the chief's.

    Args:
        tuner_dir, flat: as for `open_project`.
        tuner_id: this worker's keras-tuner id, e.g. "tuner0".
        address: `ip:port` this worker reaches the oracle at.
        timeout: seconds to wait for the chief.
        poll: seconds between looks at the project.

    Raises:
        ProjectBusyError: another worker with `tuner_id` is running this search.
        ConfigError: the chief serves at another address than `address`.
        DistributedError: no chief recorded its run within `timeout` seconds.
    """
    project = TunerProject(tuner_dir, flat)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(project.folder / f".lock.{tuner_id}", wait=False))
        except LockHeldError as held:
            raise ProjectBusyError(
                f"worker {tuner_id} of this search is already running ({held.holder}); give each worker its own "
                "KERASTUNER_TUNER_ID"
            ) from None
        _wait_for_chief(project, address, timeout, poll)
        yield project


def chief_alive(folder: Path) -> bool:
    """Whether a chief holds `folder/.lock.chief` (tested by taking it for an instant)."""
    try:
        with exclusive_lock(folder / ".lock.chief", wait=False):
            return False
    except LockHeldError:
        return True


def _wait_for_chief(project: TunerProject, address: str, timeout: float, poll: float) -> None:
    """Fill `project` from the record of its live chief; see `join_project`."""
    deadline = time.monotonic() + timeout
    while True:
        alive = chief_alive(project.folder)  # first: a live chief has already rewritten search.json
        saved = read_json(project.folder / "search.json") or {}
        project.closed = alive and bool(saved.get("oracle_closed"))
        if project.closed or (alive and saved.get("oracle") and saved.get("parent_run_id")):
            if not same_oracle(saved["oracle"], address):
                raise ConfigError(
                    f"this worker's oracle address is {address} (KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT), but "
                    f"the chief of search {project.key} serves at {saved['oracle']}; point the worker at the chief"
                )
            project.parent_run_id, project.oracle = saved["parent_run_id"], saved["oracle"]
            return
        if time.monotonic() >= deadline:
            raise DistributedError(
                f"no chief of search {project.key} recorded its sweep run in '{project.folder}' within "
                f"{timeout:g} s; start one (KERASTUNER_TUNER_ID=chief) with the same config and data, or "
                "raise tuner.distributed.wait_seconds"
            )
        time.sleep(poll)
