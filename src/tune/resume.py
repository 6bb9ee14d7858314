"""Where a sweep's MLflow record stands when its command runs: new, interrupted or finished.

A tuner project (see `tune.project`) remembers the parent run it writes to. Rerunning the
same command finds that run and either continues it (the process was killed: the interrupted
trial's child run is closed KILLED and keras-tuner runs that trial again) or reports it (the
sweep had finished). Otherwise a new parent run starts, with the data report.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional, Tuple

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tune.checks import base_names
from tune.config import Settings
from tune.data import SearchData
from tune.hypermodel import trial_values
from tune.project import TunerProject
from tune.tables import write_csv
from tune.tracking import SweepRecorder

log = logging.getLogger(__name__)
data_log = logging.getLogger("tune.data")  # the data report reads as the data's, not the resume's


def previous_run(project: TunerProject) -> Optional[Run]:
    """The MLflow run `project` wrote to before, if the store still has it; else None."""
    if not project.parent_run_id:
        return None
    try:
        run = MlflowClient().get_run(project.parent_run_id)
    except MlflowException:
        run = None
    if run is None or run.info.lifecycle_stage != "active":
        log.warning(
            "tuner project %s: its MLflow run %s is not in this store; starting the search afresh",
            project.key, project.parent_run_id,
        )  # fmt: skip
        return None
    return run


def open_recorder(
    settings: Settings, experiment_id: str, project: TunerProject, parent: Optional[Run], oracle, data: SearchData
) -> Tuple[SweepRecorder, List[dict]]:
    """A recorder on a new parent run, or on `parent` reopened; and the rows of ended trials.

    Args:
        settings: the sweep's settings.
        experiment_id: where a new parent run goes.
        project: the tuner project; a new parent run's id is saved in it.
        parent: the run to continue, or None for a new one.
        oracle: the keras-tuner oracle, reloaded from the project when continuing.
        data: the search data, whose counts and skipped files a new run records.
    """
    if parent is None:
        bases = "+".join(base_names(settings.search.base_model))
        tags = {"tune.base_init": base_init(settings.model.weights), "tune.project": project.key}
        recorder = SweepRecorder.start(experiment_id, settings, f"sweep {bases} {time.strftime('%Y-%m-%d %H:%M:%S')}", tags)
        project.set_parent_run(recorder.parent_run_id)
        recorder.log_metrics(recorder.parent_run_id, {"baseline_val_accuracy": data.baseline_accuracy})
        log_data_report(recorder, data)
        return recorder, []
    ended = {tid: {"status": oracle.trials[tid].status, "summary": _summary(oracle, tid)} for tid in oracle.end_order}
    recorder = SweepRecorder.reopen(parent.info.run_id, ended)
    log.info(
        "resuming sweep run %s: %d trial(s) already ended, %s", parent.info.run_id, len(oracle.end_order),
        "the interrupted one runs again" if oracle.ongoing_trials or oracle._retry_queue else "none was interrupted",
    )  # fmt: skip
    return recorder, ended_rows(oracle, recorder)


def base_init(weights: Optional[str]) -> str:
    """How the bases were initialised, in words, for the sweep's `tune.base_init` tag."""
    if weights is None:
        return "random, scaled to unit variance on training images (no pretraining)"
    return "imagenet" if weights == "imagenet" else f"file {weights}"


def _summary(oracle, trial_id: str) -> Dict[str, float]:
    trial = oracle.trials[trial_id]
    return {f"best_{oracle.objective.name}": trial.score} if trial.status == "COMPLETED" else {}


def finished_recorder(parent: Run) -> SweepRecorder:
    """A recorder over a finished sweep's runs, to read them back (it writes nothing)."""
    recorder = SweepRecorder(parent.info.experiment_id, parent.info.run_id)
    runs = recorder.client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    recorder.trial_runs = {r.data.tags["tune.trial_id"]: r.info.run_id for r in runs if r.info.status != "KILLED"}
    return recorder


def ended_rows(oracle, recorder: SweepRecorder) -> List[dict]:
    """Rows (see `tune.tables`) of the trials `oracle` has ended, in the order they ended."""
    rows = []
    for trial_id in oracle.end_order:
        trial = oracle.trials[trial_id]
        run_id = recorder.trial_runs.get(trial_id)
        metrics = recorder.client.get_run(run_id).data.metrics if run_id else {}
        rows.append({
            "trial_id": trial_id, "status": trial.status, "values": trial_values(trial.hyperparameters),
            "score": trial.score if trial.status == "COMPLETED" else None,
            "epochs_head": int(metrics.get("epochs_head", 0)),
            "epochs_fine_tune": int(metrics.get("epochs_fine_tune", 0)),
            "seconds": float(metrics.get("trial_seconds", 0.0)),
        })  # fmt: skip
    return rows


def registered_version(recorder: SweepRecorder, trial_id: str) -> Optional[str]:
    """The model version this sweep already registered for `trial_id` (before an interruption)."""
    tags = recorder.client.get_run(recorder.parent_run_id).data.tags
    return tags.get("tune.model_version") if tags.get("tune.registered_trial") == trial_id else None


def log_data_report(recorder: SweepRecorder, data: SearchData) -> None:
    """Log the image counts, and the files left out (`skipped_files.csv`, metric `skipped_files`).

    Files left out because they cannot be used are counted and printed; hidden and system
    files (`.DS_Store`, ...) are only listed in the CSV.
    """
    bad = [s for s in data.skipped if s.bad]
    counts = {f"{split}_images": n for split, n in data.counts.items()}
    recorder.log_metrics(recorder.parent_run_id, {"skipped_files": len(bad), **counts})
    if data.skipped:
        rows = [[s.split, s.path, "skipped" if s.bad else "ignored", s.reason] for s in data.skipped]
        recorder.client.log_text(recorder.parent_run_id, write_csv(["split", "path", "kind", "reason"], rows), "skipped_files.csv")
    if bad:
        data_log.warning("skipped %d file(s), listed in skipped_files.csv of run %s:", len(bad), recorder.parent_run_id)
        for s in bad[:10]:
            data_log.warning("  %s: %s", s.path, s.reason)
        if len(bad) > 10:
            data_log.warning("  ... and %d more", len(bad) - 10)
