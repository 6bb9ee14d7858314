"""The tuner project of a sweep: one folder per search definition, locked while it runs.

keras-tuner reloads a project folder silently when asked not to overwrite it, whatever the
search now is. Here the folder's name is a key hashed from everything that defines the
search (data files, base model, search space, recipe, tuner, seed), so the same command
resumes its own trials, and any change to the search gets a new project. The definition is
kept in `search.json`, so a new project can say how it differs from the last one.

    <tuner_dir>/<key>/
      search.json        the definition, its key, and the MLflow parent run it writes to
      .lock              held (flock) by the process running this search
      keras_tuner/       keras-tuner's project: oracle.json, trial_*/ (checkpoints)
      bases/, trials/, sweep/    our files: random bases, trial figures, sweep figures
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from tune.config import Settings
from tune.errors import TuneError
from tune.tracking import flatten

log = logging.getLogger(__name__)

# Settings that do not change what a trial computes, left out of the key.
_NOT_DEFINING = {"training.verbose", "data.name", "tuner.overwrite", "tuner.options.max_consecutive_failed_trials"}


class ProjectBusyError(TuneError, RuntimeError):
    """Another process is running the same search in the same project folder."""


def definition(settings: Settings, data_fingerprint: str) -> Dict[str, Any]:
    """Everything that decides what a sweep's trials compute, as flat `dotted.key: "value"` pairs.

    Args:
        settings: the sweep's settings.
        data_fingerprint: identifies exactly the usable image files (see `tune.data`).
    """
    flat: Dict[str, Any] = {"seed": str(settings.seed), "data.files": data_fingerprint}
    for group in ("data", "model", "search", "tuner", "training"):
        flat.update(flatten(group, getattr(settings, group)))
    return {k: v for k, v in sorted(flat.items()) if k not in _NOT_DEFINING}


def search_key(flat: Dict[str, Any]) -> str:
    """A 12-hex-digit key of a definition (sha256 of its canonical JSON)."""
    text = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """`key: old -> new` for every key whose value differs, sorted by key."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in keys if old.get(k) != new.get(k)]


class TunerProject:
    """The folder of one search definition, locked by this process.

    Args:
        tuner_dir: the folder holding every project of an experiment.
        flat: the search definition (see `definition`).
        fresh: start again: empty the folder of a previous run of the same search.

    Attributes:
        key: the definition's key, also the folder name.
        folder: `tuner_dir/key`.
        existed: the folder held keras-tuner state from an earlier run (and `fresh` was off).
        parent_run_id: the MLflow run this project wrote to, if it ever started one.

    Raises:
        ProjectBusyError: another process holds the project's lock.
    """

    def __init__(self, tuner_dir: Path, flat: Dict[str, Any], fresh: bool = False):
        self.flat, self.key = flat, search_key(flat)
        self.folder = Path(tuner_dir) / self.key
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = _acquire(self.folder / ".lock")
        if fresh:
            _empty(self.folder)
        saved = _read_json(self.folder / "search.json")
        self.existed = saved is not None and (self.folder / "keras_tuner" / "oracle.json").exists()
        self.parent_run_id: Optional[str] = (saved or {}).get("parent_run_id")
        if saved is None:
            self._note_changes(Path(tuner_dir))
        self.save()

    def save(self) -> None:
        """Write `search.json` (definition, key, parent run id)."""
        record = {"key": self.key, "parent_run_id": self.parent_run_id, "definition": self.flat}
        path = self.folder / "search.json"
        path.with_suffix(".tmp").write_text(json.dumps(record, indent=1, default=str))
        os.replace(path.with_suffix(".tmp"), path)

    def set_parent_run(self, run_id: str) -> None:
        """Remember the MLflow parent run this project writes to."""
        self.parent_run_id = run_id
        self.save()

    def _note_changes(self, tuner_dir: Path) -> None:
        """Log how this new search differs from the most recent other project, if any."""
        others = sorted(tuner_dir.glob("*/search.json"), key=lambda p: p.stat().st_mtime)
        others = [p for p in others if p.parent != self.folder]
        if not others:
            return
        previous = _read_json(others[-1]) or {}
        changed = differences(previous.get("definition", {}), self.flat)
        log.info(
            "new tuner project %s (the search differs from project %s in %s); earlier trials are not reused",
            self.key, others[-1].parent.name, "; ".join(changed[:8]) + (" ..." if len(changed) > 8 else ""),
        )  # fmt: skip

    def release(self) -> None:
        """Release the lock (also released when the process ends, even by SIGKILL)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _acquire(path: Path):
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ProjectBusyError(
            f"this search is already running in another process (pid {holder}); its tuner project "
            f"'{path.parent}' is locked. Wait for it, or change the search or tracking.experiment_name"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _empty(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.name == ".lock":
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
