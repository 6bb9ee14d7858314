"""Where a sweep's MLflow record stands when its command runs again: interrupted or finished.

A tuner project (see `tune.search.project`) remembers the parent run it writes to. Rerunning
the same command finds that run and either continues it (the process was killed: the
interrupted trial's child run is closed KILLED and keras-tuner runs that trial again) or
reads it back (the sweep had finished).
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
    runs = recorder.child_runs()
    recorder.trial_runs = {r.data.tags["tune.trial_id"]: r.info.run_id for r in runs if r.info.status != "KILLED"}
    return recorder, ended_records(oracle, recorder)


def registered_version(recorder: SweepRecorder, trial_id: str) -> Optional[str]:
    """The model version this sweep already registered for `trial_id` (before an interruption)."""
    tags = recorder.client.get_run(recorder.parent_run_id).data.tags
    return tags.get("tune.model_version") if tags.get("tune.registered_trial") == trial_id else None
