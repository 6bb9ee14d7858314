"""The tuner project of a search: one folder per search definition, locked while it runs.

keras-tuner reloads a project folder silently when asked not to overwrite it, whatever the
search now is. Here the folder's name is a key hashed from everything that defines the
search (data files, base model, search space, recipe, tuner, seed), so the same command
resumes its own trials, and any change to the search gets a new project. The definition is
kept in `search.json`, so a new project can say how it differs from the last one.

    <tuner_dir>/<key>/
      search.json        the definition, its key, and the MLflow parent run it writes to
      .lock              held (flock) by the process running this search
      keras_tuner/       keras-tuner's project: oracle.json, trial_*/ (trial.json, checkpoints;
                         a finished search keeps only its best trial's checkpoint by default)
      bases/             random bases and the head's feature statistics
      trials/, sweep/    figures and tables, before they are logged to MLflow
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

from tune.errors import ProjectBusyError
from tune.files import LockHeldError, exclusive_lock, read_json, short_hash, write_json

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
    """

    def __init__(self, tuner_dir: Path, flat: Dict[str, Any]):
        self.flat, self.key = flat, short_hash(flat, KEY_DIGITS)
        self.folder = Path(tuner_dir) / self.key
        self.parent_run_id: Optional[str] = None

    @property
    def keras_tuner_dir(self) -> Path:
        """keras-tuner's own project folder inside this one."""
        return self.folder / "keras_tuner"

    def save(self) -> None:
        """Write `search.json` (definition, key, parent run id)."""
        record = {"key": self.key, "parent_run_id": self.parent_run_id, "definition": self.flat}
        write_json(self.folder / "search.json", record)

    def set_parent_run(self, run_id: str) -> None:
        """Remember the MLflow parent run this project writes to."""
        self.parent_run_id = run_id
        self.save()

    def _load(self, fresh: bool) -> None:
        """Empty the folder when `fresh`; read `search.json`, or say how a new search differs."""
        if fresh:
            for entry in self.folder.iterdir():
                if entry.name != ".lock":
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
def open_project(tuner_dir: Path, flat: Dict[str, Any], fresh: bool = False) -> Iterator[TunerProject]:
    """The project of the search `flat` under `tuner_dir`, locked by this process while inside.

    Args:
        tuner_dir: the folder holding every project of an experiment.
        flat: the search definition, `dotted.key: "value"` pairs.
        fresh: start again: empty the folder of a previous run of the same search.

    Raises:
        ProjectBusyError: another process holds the project's lock. The lock is released
            when this process leaves the block or ends, even by SIGKILL.
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
        yield project
