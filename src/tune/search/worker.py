"""A worker of a chief/worker search: it trains the trials the chief's oracle hands out.

Started like the chief, with the same config and data but its own tuner id (see
`tune.search.roles`), a worker computes the same search definition, so it finds the same
tuner project on the shared filesystem. There it waits for the chief to record its sweep
run and oracle address (`tune.search.project.join_project`), reads the caches the chief
filled, and runs keras-tuner's search: each trial the oracle hands out becomes a child run
of the chief's sweep run, tagged `tune.tuner_id`. It exits when the oracle has no trial
left. Evaluating on the test folder, refitting, registering, pruning and finishing the
sweep run are the chief's.

A worker killed during a trial and started again with the same tuner id gets that trial
again from the oracle: the run its predecessor left RUNNING is closed KILLED first
(`tune.tracking.resume.close_worker_runs`), and the trial runs again in a new run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import keras_tuner as kt
from mlflow.tracking import MlflowClient

from tune.config.settings import Settings
from tune.data.pipeline import SearchData
from tune.reports.tables import summary_table
from tune.search.caches import search_hypermodel
from tune.search.grid import TunerPlan
from tune.search.memory import frozen_heap
from tune.search.project import join_project
from tune.search.roles import Role
from tune.search.tuners import failed_trials_untraced, make_tuner
from tune.tracking import resume
from tune.tracking.recorder import SweepRecorder
from tune.tracking.records import TrialRecord
from tune.tracking.store import open_store

log = logging.getLogger(__name__)


@dataclass
class WorkerResult:
    """What one worker did.

    Attributes:
        tuner_id: its keras-tuner id, e.g. "tuner0".
        oracle: `ip:port` of the chief it worked for.
        parent_run_id: the chief's sweep run its trial runs belong to.
        experiment_id: the MLflow experiment of that run.
        objective: the objective's name, e.g. "val_accuracy".
        direction: "max" or "min", the objective's.
        records: the trials this worker ended, in the order they ended.
    """

    tuner_id: str
    oracle: str
    parent_run_id: str
    experiment_id: str
    objective: str
    direction: str
    records: List[TrialRecord] = field(default_factory=list)

    @property
    def best_score(self) -> float:
        """The best objective value among this worker's completed trials; NaN when none completed."""
        scores = [r.score for r in self.records if r.completed]
        if not scores:
            return math.nan
        return max(scores) if self.direction == "max" else min(scores)

    @property
    def summary(self) -> str:
        """A text table of this worker's trials, for the terminal."""
        return summary_table(self.records, self.objective, self.direction)

    @property
    def trial_statuses(self) -> Dict[str, str]:
        """Trial id -> COMPLETED, FAILED, ... of this worker's trials."""
        return {r.trial_id: r.status for r in self.records}


def run_worker(
    settings: Settings,
    role: Role,
    objective: kt.Objective,
    size: tuple,
    data: SearchData,
    plan: TunerPlan,
    flat: Dict[str, str],
) -> WorkerResult:
    """Run the trials the chief at `role.address` hands out until it has none left.

    Args:
        settings: the sweep's settings, the chief's own.
        role: this worker's tuner id and the chief's oracle address.
        objective: what the tuner optimises.
        size: (height, width) of the images, in pixels.
        data: the search data.
        plan: the tuner the search runs (the chief's).
        flat: the search definition, which names the tuner project.

    Raises:
        DistributedError: no chief recorded its run within `tuner.distributed.wait_seconds`.
        ConfigError: the chief serves at another address.
        ProjectBusyError: another worker with the same tuner id is running.
        KeyboardInterrupt: Ctrl-C or SIGTERM; this worker's open trial run ends KILLED, and
            the trial is handed to this tuner id again when it restarts.
    """
    wait = settings.tuner.distributed.wait_seconds
    log.info("worker %s: waiting for the chief at %s (at most %g s)", role.tuner_id, role.address, wait)
    with join_project(Path(settings.tuner_dir), flat, role.tuner_id, role.address, wait) as project:
        if project.closed:
            log.info("worker %s: the chief has handed out every trial; nothing left to do", role.tuner_id)
            return _result(role, project, objective, [], "")
        log.info("worker %s: working for sweep run %s", role.tuner_id, project.parent_run_id)
        hypermodel, _, _ = search_hypermodel(settings, objective, size, data, project.folder / "bases")
        tracking = settings.tracking
        open_store(tracking.uri, tracking.experiment_name, tracking.artifact_location)
        parent = MlflowClient().get_run(project.parent_run_id)
        recorder = SweepRecorder(parent.info.experiment_id, parent.info.run_id)
        options, seed = settings.tuner.options, settings.seed
        tuner = make_tuner(plan, hypermodel, objective, project.folder, options, seed, resume=True)  # never emptied
        resume.close_worker_runs(recorder, role.tuner_id, tuner.oracle, objective.name)
        tuner.track(recorder, data.rows, data.class_names, project.folder, worker=role.tuner_id)
        _search(tuner, data, recorder)
    return _result(role, project, objective, list(tuner.records), recorder.experiment_id)


def _result(role: Role, project, objective: kt.Objective, records: List[TrialRecord], experiment_id: str):
    """The `WorkerResult` of this worker's `records` in `project`."""
    address = project.oracle or role.address
    run_id = project.parent_run_id or ""
    return WorkerResult(role.tuner_id, address, run_id, experiment_id, objective.name, objective.direction, records)


def _search(tuner, data: SearchData, recorder: SweepRecorder) -> None:
    """`tuner.search` as a worker; on any error this worker's open trial run is closed first."""
    try:
        with failed_trials_untraced(), frozen_heap():  # each failure is in its trial's run
            tuner.search(data.train, validation_data=data.validation, verbose=0)
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        recorder.close_trials(status, f"worker {tuner.worker} stopped ({status}) during this trial")
        err.recorded_run_id = recorder.parent_run_id  # the command keeps its log folder
        raise
