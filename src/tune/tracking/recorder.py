"""The MLflow layout of a sweep (after mlflow's `examples/hyperparam`).

    experiment <tracking.experiment_name>
      run "sweep ..."            params: data.*, model.*, search.*, tuner.*, training.*; best.*
      |                          tags: tune.role=sweep, tune.overrides, tune.best_run_id,
      |                                mlflow.source.git.commit, ...
      |                          metrics: baseline_val_accuracy, best_<objective>,
      |                                   test_accuracy, test_loss (when a trial completed),
      |                                   search_seconds, activation_cache_* (tune.search.sweep),
      |                                   refit_images, refit_epochs_head, refit_epochs_fine_tune,
      |                                   refit_seconds, refit_loss and refit_accuracy per epoch
      |                          tags (end): tune.registered_model=refit|trial, tune.refit_trial,
      |                                tune.refit_error (a refit that diverged)
      |                                (tune.search.refit)
      |                          artifacts: config.yaml, trials.csv, class_names.json, model/
      |                          tags (chief/worker mode): tune.oracle (the chief's ip:port)
      |                          status FINISHED, FAILED (no trial completed, or an error) or KILLED
      +- run "trial 00"          params: base_model, head_width, learning_rate, momentum,
      +- run "trial 01"                  thawed_layers; keras-tuner's tuner/* (Hyperband)
                                 metrics per epoch (step = epoch, both phases; a continued
                                   Hyperband trial starts at its initial_epoch):
                                   loss, accuracy, val_loss, val_accuracy
                                 metrics: best_<objective>, epochs_head, epochs_fine_tune,
                                   trial_seconds, process_rss_mb (MB resident after it)
                                 tags: tune.trial_id; tune.tuner_id (the worker that ran it,
                                   in chief/worker mode)
                                 status FINISHED, FAILED (tag tune.error says why) or KILLED

Keras log keys are the MLflow metric keys; parameter names are stable across runs so the
MLflow compare view lines them up. Runs are written with `MlflowClient`, by run id.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tune.config.settings import MAX_PARAM
from tune.tracking.records import TrialRecord
from tune.tracking.redaction import redact_overrides, redact_params, redact_text
from tune.tracking.source import source_tags

# keras-tuner's trial status -> the MLflow status of its run
_STATUS = {"COMPLETED": "FINISHED", "FAILED": "FAILED", "INVALID": "FAILED", "STOPPED": "KILLED"}


class SweepRecorder:
    """Writes one sweep's parent run and a nested child run per trial.

    Make one with `start` (a new sweep) or `reopen` (a sweep resumed after an interruption).

    Args:
        experiment_id: the MLflow experiment (see `open_store`).
        parent_run_id: the sweep's run.
        trial_runs: keras-tuner trial id -> MLflow run id of trials recorded so far.
    """

    def __init__(self, experiment_id: str, parent_run_id: str, trial_runs: Optional[Dict[str, str]] = None):
        self.client = MlflowClient()
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.trial_runs: Dict[str, str] = dict(trial_runs or {})  # keras-tuner trial id -> MLflow run id

    @classmethod
    def start(
        cls,
        experiment_id: str,
        run_name: str,
        params: Dict[str, str],
        config_yaml: str,
        overrides: List[str],
        tags: Dict[str, str],
    ) -> "SweepRecorder":
        """Create the sweep's parent run with its params, tags and `config.yaml`.

        Credentials in the overrides and the config (URL passwords, keys named like
        password, token or secret) are masked first; see `tune.tracking.redaction`.

        Args:
            experiment_id: the MLflow experiment (see `tune.tracking.store.open_store`).
            run_name: e.g. "sweep vgg16 2026-11-30 18:00:00".
            params: dotted config keys -> values (`Settings.params()`).
            config_yaml: the whole composed config, logged as `config.yaml`.
            overrides: the command-line overrides, logged as the tag `tune.overrides`.
            tags: more tags of the run.
        """
        client = MlflowClient()
        tags = {"tune.role": "sweep", "tune.overrides": " ".join(redact_overrides(overrides)), **source_tags(), **tags}
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        recorder = cls(experiment_id, run.info.run_id)
        recorder.log_params(recorder.parent_run_id, redact_params(params))
        client.log_text(recorder.parent_run_id, redact_text(config_yaml), "config.yaml")
        return recorder

    @classmethod
    def reopen(cls, run_id: str, ended: Dict[str, TrialRecord], objective: str) -> "SweepRecorder":
        """Continue a sweep's parent run after its process stopped.

        The parent is set RUNNING again and tagged `tune.resumed` (how many times). A child
        run still RUNNING belongs to a trial the process was in when it stopped: if the
        tuner had already ended that trial (`ended`), the run is closed with the tuner's
        status and summary; otherwise it is closed KILLED, and the tuner runs the trial again
        in a new child run.

        Args:
            run_id: the parent run.
            ended: keras-tuner trial id -> record, of every trial the tuner has ended.
            objective: the objective's name; an ended trial's run gets `best_<objective>`.
        """
        client = MlflowClient()
        parent = client.get_run(run_id)
        recorder = cls(parent.info.experiment_id, run_id)
        runs = recorder.child_runs(order_by=["attributes.start_time ASC"])
        for run in runs:
            trial_id = run.data.tags.get("tune.trial_id")
            if run.info.status == "RUNNING":
                message = "interrupted: the sweep stopped during this trial; it ran again on resume"
                recorder.close_left_running(run, ended.get(trial_id), objective, message)
            elif run.info.status != "KILLED":
                recorder.trial_runs[trial_id] = run.info.run_id
        resumed = int(parent.data.tags.get("tune.resumed", "0")) + 1
        client.set_tag(run_id, "tune.resumed", str(resumed))
        client.update_run(run_id, status="RUNNING")
        return recorder

    def close_left_running(self, run, record: Optional[TrialRecord], objective: str, message: str) -> None:
        """Close a trial's run that a stopped process left RUNNING.

        Args:
            run: the trial's MLflow `Run`, status RUNNING.
            record: the trial, if the tuner ended it before the process stopped: the run
                is closed with its status and `best_<objective>`, and kept in `trial_runs`;
                None: the run is closed KILLED with `message` (tag `tune.error`), and the
                trial runs again in a new run.
            objective: the objective's name.
            message: why the run was interrupted.
        """
        trial_id, run_id = run.data.tags.get("tune.trial_id"), run.info.run_id
        if record is not None:
            self.trial_runs[trial_id] = run_id
            self.end_trial(trial_id, record.status, {f"best_{objective}": record.score})
            return
        self.client.set_tag(run_id, "tune.error", message)
        self.client.set_terminated(run_id, "KILLED")

    def child_runs(self, order_by: Optional[List[str]] = None) -> list:
        """Every trial run under the sweep's run, as MLflow `Run`s."""
        query = f"tags.mlflow.parentRunId = '{self.parent_run_id}'"
        return self.client.search_runs([self.experiment_id], query, max_results=50_000, order_by=order_by)

    def log_params(self, run_id: str, params: Dict[str, Any]) -> None:
        """Log params in batches of 100 (MLflow's limit per request)."""
        items = [mlflow.entities.Param(k, str(v)[:MAX_PARAM]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: Dict[str, float], step: int = 0) -> None:
        """Log numeric values at `step`; values that are not numbers are left out."""
        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) or hasattr(value, "__float__")
        ]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def start_trial(self, trial_id: str, values: Dict[str, Any], tags: Optional[Dict[str, str]] = None) -> str:
        """Create the trial's child run with its hyperparameter values (and keras-tuner's `tuner/*`) as params.

        Args:
            trial_id: keras-tuner's trial id, e.g. "03".
            values: param name -> value.
            tags: more tags of the run (a worker's `tune.tuner_id`).

        Returns:
            The new run's id.
        """
        own = {"mlflow.parentRunId": self.parent_run_id, "tune.role": "trial", "tune.trial_id": trial_id}
        run = self.client.create_run(self.experiment_id, run_name=f"trial {trial_id}", tags={**own, **(tags or {})})
        self.trial_runs[trial_id] = run.info.run_id
        self.log_params(run.info.run_id, values)
        return run.info.run_id

    def log_epoch(self, trial_id: str, epoch: int, logs: Dict[str, Any]) -> None:
        """Log one epoch's Keras logs (loss, accuracy, val_loss, val_accuracy) at step `epoch`."""
        self.log_metrics(self.trial_runs[trial_id], logs, step=epoch)

    def end_trial(self, trial_id: str, status: str, summary: Dict[str, float], message: str = "") -> None:
        """Close the trial's run: FINISHED for a completed trial, FAILED with the reason otherwise."""
        run_id = self.trial_runs[trial_id]
        self.log_metrics(run_id, {k: v for k, v in summary.items() if v is not None and not math.isnan(v)})
        # message: keras-tuner's traceback of a failed trial; MLflow keeps 5,000 characters of a tag
        if message:
            self.client.set_tag(run_id, "tune.error", message[-5000:])
        self.client.set_terminated(run_id, _STATUS.get(status, "FAILED"))

    def mark_best(self, trial_id: str, objective: str, score: float, values: Dict[str, Any]) -> None:
        """Record the best trial on the parent and tag its child run."""
        self.client.set_tag(self.trial_runs[trial_id], "tune.best", "true")
        self.client.set_tag(self.parent_run_id, "tune.best_run_id", self.trial_runs[trial_id])
        self.log_params(self.parent_run_id, {f"best.{k}": v for k, v in values.items()})
        self.log_metrics(self.parent_run_id, {f"best_{objective}": score})

    def finish(self, status: str) -> None:
        """End the parent run, and any child run left open, with `status`.

        Args:
            status: FINISHED, FAILED or KILLED.
        """
        self.close_trials(status, f"the sweep ended ({status}) during this trial")
        self.client.set_terminated(self.parent_run_id, status)

    def close_trials(self, status: str, message: str) -> None:
        """End every trial run in `trial_runs` still RUNNING: FAILED after FINISHED, else `status`.

        Args:
            status: how the process ends: FINISHED, FAILED or KILLED.
            message: why, as the runs' `tune.error` tag.
        """
        for run_id in self.trial_runs.values():
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_tag(run_id, "tune.error", message)
                self.client.set_terminated(run_id, "FAILED" if status == "FINISHED" else status)
