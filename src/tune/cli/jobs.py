"""A Hydra command's work as one job: its errors, its output folder, and a multirun's failures.

`python -m tune -m seed=0,1` runs one job per combination of values, one after another, each
a whole sweep with its own folder under `experiments/<name>/multirun-<date>/<job>/`. A job
that fails prints its error (and writes it to its `tune.log`) and the next job runs; at the
end the command exits non-zero, naming the jobs that failed (`finish`).

A command that fails before it recorded anything in MLflow leaves no folder behind: its
Hydra output folder (`experiments/<name>/<date>/`, or a job's folder, and a multirun's
folder once no job's folder is left) is removed. An error after a run was recorded stays
in that folder's `tune.log`.
"""

from __future__ import annotations

import logging
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Set, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode

from tune.cli.prologue import ERROR_STATUS, run_command
from tune.errors import TuneError

T = TypeVar("T")
BUG_STATUS = 1  # a job failed with a traceback, as Python exits on one


@dataclass
class Multirun:
    """What the jobs of one multirun left: how many ran, which failed, their sweep folders."""

    jobs: int = 0
    failed: List[str] = field(default_factory=list)  # "#<num> (<overrides>)" of each failed job
    bug: bool = False  # a failure was not a TuneError
    folders: Set[Path] = field(default_factory=set)


MULTIRUN = Multirun()


class MultirunStart(Callback):
    """Makes `${hydra:...}` resolvable while Hydra makes a multirun's folder (`hydra.sweep.dir`).

    Hydra sets its runtime config only per job, and `hydra.sweep.dir` is made before the first
    one; `paths.root_dir` in it is `${hydra:runtime.cwd}`.
    """

    def on_multirun_start(self, config, **kwargs) -> None:
        HydraConfig.instance().set_config(config)


def run_job(task: Callable[[], T], on_interrupt: str = "") -> Optional[T]:
    """Run a Hydra command's task; on an error, log it and remove the folder if nothing was recorded.

    Args:
        task: the job's work; a run it recorded before failing is on the error as
            `recorded_run_id` (see `tune.search.sweep`).
        on_interrupt: what an interrupt left behind, appended to its message.

    Returns:
        The task's result; None when it failed as a job of a multirun (the next job runs).

    Exits:
        As `tune.cli.prologue.run_command` in a single run: 2 after a `TuneError`, 130 after
        an interrupt (also in a multirun); a bug keeps its traceback.
    """
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return run_command(lambda: _guarded(task, Path(hydra_cfg.runtime.output_dir), 2), on_interrupt)
    MULTIRUN.jobs += 1
    folder = Path(hydra_cfg.runtime.output_dir)  # <hydra.sweep.dir>/<job number>
    MULTIRUN.folders.add(folder.parent)
    try:
        return run_command(lambda: _guarded(task, folder, 0), on_interrupt)
    except (Exception, SystemExit) as err:
        if isinstance(err, SystemExit) and err.code != ERROR_STATUS:
            raise  # an interrupt stops every job
        if not isinstance(err, SystemExit):
            traceback.print_exc()
            MULTIRUN.bug = True
        MULTIRUN.failed.append(f"#{hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)})")
        return None


def _guarded(task: Callable[[], T], folder: Path, parents: int) -> T:
    """`task()`; an error goes to the log files, and removes `folder` when no run was recorded."""
    try:
        return task()
    except Exception as err:
        message = f"tune: error: {err}" if isinstance(err, TuneError) else traceback.format_exc()
        log_to_files(message)
        if getattr(err, "recorded_run_id", None) is None:
            remove_folder(folder, parents)
        raise


def log_to_files(message: str) -> None:
    """Write `message` as an ERROR record to the log files only (the console shows it already)."""
    root = logging.getLogger()
    record = root.makeRecord("tune", logging.ERROR, __file__, 0, message, None, None)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def remove_folder(folder: Path, parents: int) -> None:
    """Remove `folder` and then up to `parents` of its parent folders that are left empty."""
    shutil.rmtree(folder, ignore_errors=True)
    for parent in list(folder.parents)[:parents]:
        if not parent.is_dir() or any(parent.iterdir()):
            break
        parent.rmdir()


def finish() -> None:
    """After a multirun: remove its folder if no job's folder is left; exit non-zero if a job failed.

    Exits:
        2 when jobs failed with a `TuneError`, 1 when one failed with a bug; nothing after a single run.
    """
    for folder in MULTIRUN.folders:
        if folder.is_dir() and not any(path.is_dir() for path in folder.iterdir()):
            remove_folder(folder, 2)
    if MULTIRUN.failed:
        failed = ", ".join(MULTIRUN.failed)
        print(f"tune: error: {len(MULTIRUN.failed)} of {MULTIRUN.jobs} jobs failed: {failed}", file=sys.stderr)
        sys.exit(BUG_STATUS if MULTIRUN.bug else ERROR_STATUS)
