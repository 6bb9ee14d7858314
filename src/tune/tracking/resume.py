"""Where a sweep's MLflow record stands when its command runs again: interrupted or finished.

A tuner project (see `tune.search.project`) remembers the parent run it writes to. Rerunning
the same command finds that run and either continues it (the process was killed: the
interrupted trial's child run is closed KILLED and keras-tuner runs that trial again) or
reads it back (the sweep had finished). In chief/worker mode, a worker restarted with the
same tuner id closes the runs its killed predecessor left open (`close_worker_runs`), and
the chief reads every worker's trials back at the end (`collect_trials`).
"""

from __future__ import annotations

import logging
from typing import List, Optional, Tuple

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tune.tracking.recorder import SweepRecorder
from tune.tracking.records import TrialRecord

log = logging.getLogger(__name__)
TUNER_TAG = "tune.tuner_id"  # a worker's trial runs: its keras-tuner id


def previous_run(run_id: Optional[str], project_key: str) -> Optional[Run]:
    """The MLflow run a tuner project wrote to before, if the store still has it active; else None."""
    if not run_id:
        return None
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        run = None
    if run is None or run.info.lifecycle_stage != "active":
        log.warning(
            "tuner project %s: its MLflow run %s is not in this store; starting the search afresh", project_key, run_id
        )
        return None
    return run


def interrupted(oracle) -> List[str]:
    """Trials the oracle started but never ended: the process stopped during them."""
    ended = set(oracle.end_order)
    return [trial_id for trial_id in oracle.start_order if trial_id not in ended]


def ended_records(oracle, recorder: SweepRecorder) -> List[TrialRecord]:
    """Records of the trials `oracle` has ended, in the order they ended, with their runs' metrics."""
    records = []
    for trial_id in oracle.end_order:
        run_id = recorder.trial_runs.get(trial_id)
        metrics = recorder.client.get_run(run_id).data.metrics if run_id else {}
        records.append(TrialRecord.from_metrics(oracle.trials[trial_id], metrics))
    return records


def reopen(parent: Run, oracle, objective: str) -> Tuple[SweepRecorder, List[TrialRecord]]:
    """Continue an interrupted sweep's run; return its recorder and the trials already ended.

    Args:
        parent: the sweep's run, from `previous_run`.
        oracle: the keras-tuner oracle, reloaded from the tuner project.
        objective: the objective's name.
    """
    ended = {trial_id: TrialRecord.from_metrics(oracle.trials[trial_id], {}) for trial_id in oracle.end_order}
    recorder = SweepRecorder.reopen(parent.info.run_id, ended, objective)
    again = interrupted(oracle)
    log.info(
        "resuming sweep run %s: %d trial(s) already ended, %s",
        parent.info.run_id,
        len(ended),
        f"trial {', '.join(again)} runs again" if again else "none was interrupted",
    )
    return recorder, ended_records(oracle, recorder)


def read_back(parent: Run, oracle) -> Tuple[SweepRecorder, List[TrialRecord]]:
    """A recorder over a finished sweep's runs, to read them (it writes nothing), and its trials."""
    recorder = SweepRecorder(parent.info.experiment_id, parent.info.run_id)
    return recorder, collect_trials(recorder, oracle)


def collect_trials(recorder: SweepRecorder, oracle) -> List[TrialRecord]:
    """The ended trials of `oracle`, read from the sweep's child runs whoever wrote them.

    A chief records no trial itself: its workers did. `recorder.trial_runs` is set to each
    trial's run that was not KILLED (a killed worker's first attempt is).

    Returns:
        One record per trial the oracle ended, in the order they ended.
    """
    runs = recorder.child_runs(order_by=["attributes.start_time ASC"])
    recorder.trial_runs = {r.data.tags["tune.trial_id"]: r.info.run_id for r in runs if r.info.status != "KILLED"}
    return ended_records(oracle, recorder)


def close_worker_runs(recorder: SweepRecorder, tuner_id: str, oracle, objective: str) -> List[str]:
    """Close the trial runs an earlier process with worker id `tuner_id` left RUNNING (it was killed).

    Only one process runs a tuner id at a time (`tune.search.project.join_project`), so such
    a run is stale. A trial the chief's oracle has ended keeps its run, closed with the
    trial's status; one still RUNNING there is handed to this worker again by keras-tuner,
    so its old run is closed KILLED and the trial runs again in a new one.

    Args:
        recorder: the sweep's recorder.
        tuner_id: this worker's keras-tuner id (tag `tune.tuner_id` of its runs).
        oracle: the chief's oracle, as this worker reaches it.
        objective: the objective's name.

    Returns:
        The trial ids whose runs were closed.
    """
    closed = []
    for run in recorder.child_runs():
        if run.info.status != "RUNNING" or run.data.tags.get(TUNER_TAG) != tuner_id:
            continue
        trial = oracle.get_trial(run.data.tags["tune.trial_id"])
        record = None if trial.status == "RUNNING" else TrialRecord.from_metrics(trial, {})
        message = f"interrupted: worker {tuner_id} stopped during this trial; it ran again"
        recorder.close_left_running(run, record, objective, message)
        closed.append(trial.trial_id)
    if closed:
        log.info("worker %s: closed the runs it left open of trial(s) %s", tuner_id, ", ".join(closed))
    return closed


def registered_version(recorder: SweepRecorder, trial_id: str) -> Optional[str]:
    """The model version this sweep already registered for `trial_id` (before an interruption)."""
    tags = recorder.client.get_run(recorder.parent_run_id).data.tags
    return tags.get("tune.model_version") if tags.get("tune.registered_trial") == trial_id else None
