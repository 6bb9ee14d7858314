"""The MLflow layout of a sweep (after mlflow's `examples/hyperparam`).

    experiment <tracking.experiment_name>
      run "sweep ..."            params: data.*, model.*, search.*, tuner.*, training.*
      |                          tags: tune.role=sweep, tune.overrides, mlflow.source.git.commit
      |                          metrics: baseline_<objective>, best_<objective>,
      |                                   test_accuracy, test_loss
      |                          artifacts: config.yaml, class_names.json, model/
      +- run "trial 00"          params: base_model, head_width, learning_rate, momentum,
      +- run "trial 01"                  thawed_layers (the trial's values)
                                 metrics per epoch (step = epoch, both phases):
                                   loss, accuracy, val_loss, val_accuracy
                                 metrics: best_<objective>, epochs_head, epochs_fine_tune,
                                   trial_seconds, process_rss_mb (MB resident after it)
                                 status FINISHED or FAILED (tag tune.error says why)

Keras log keys are the MLflow metric keys; parameter names are stable across runs so the
MLflow compare view lines them up. Runs are written with `MlflowClient`, by run id.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional
from urllib.parse import ParseResult, urlparse

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tune.config import Settings, TrackingConfig
from tune.redaction import redact_overrides, redact_text

_STATUS = {"COMPLETED": "FINISHED", "FAILED": "FAILED", "INVALID": "FAILED", "STOPPED": "KILLED"}
_MAX_PARAM = 6000  # MLflow's limit on a param value, in characters


def open_store(cfg: TrackingConfig) -> str:
    """Point MLflow at `cfg.uri` and return the id of `cfg.experiment_name`, created if new.

    A new experiment keeps its artifacts under `cfg.artifact_location` (for a tracking
    server, the server decides). Safe to call from several processes at once on one new
    SQLite store (see `store_lock`).
    """
    url = urlparse(cfg.uri)
    mlflow.set_tracking_uri(cfg.uri)
    with store_lock(url):
        client = MlflowClient()  # creates the tables of a new SQLite store
        experiment = client.get_experiment_by_name(cfg.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        local = url.scheme not in ("http", "https", "databricks")
        location = Path(cfg.artifact_location).resolve().as_uri() if local else None
        return client.create_experiment(cfg.experiment_name, artifact_location=location)


@contextmanager
def store_lock(url: ParseResult) -> Iterator[None]:
    """Hold an exclusive lock on `<db>.lock` beside a SQLite store file, across processes.

    MLflow creates a new SQLite store's tables, and runs its schema migrations, on first use
    without a lock, so two processes opening one new store at once fail ("table experiments
    already exists", "duplicate column name"); two creating one new experiment collide too.
    Inside this lock one process creates them and the others then find them. Creates the
    store's folder. Does nothing for other stores, or on Windows (no `fcntl`).
    """
    if url.scheme != "sqlite" or url.path in ("", "/:memory:"):
        yield
        return
    db = Path(url.path)
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        if os.name != "nt":
            import fcntl  # POSIX only

            fcntl.flock(lock, fcntl.LOCK_EX)  # waits for the holder; released when the file closes
        yield


def flatten(prefix: str, value: Any) -> Dict[str, str]:
    """Dotted `prefix.key` names for every leaf of nested dataclasses and dicts."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        out: Dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}", item))
        return out
    return {prefix: str(value)[:_MAX_PARAM]}


def git_commit(folder: Path) -> Optional[str]:
    """The commit checked out in `folder`, or None outside a git work tree."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


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
    def start(cls, experiment_id: str, settings: Settings, run_name: str, tags: Dict[str, str]) -> "SweepRecorder":
        """Create the sweep's parent run with the settings as params and `config.yaml`.

        Credentials in the overrides and the config (URL passwords, keys named like
        password, token or secret) are masked first; see `tune.redaction`.
        """
        client = MlflowClient()
        tags = {"tune.role": "sweep", "tune.overrides": " ".join(redact_overrides(settings.overrides)), **tags}
        commit = git_commit(Path(__file__).parent)
        if commit:
            tags["mlflow.source.git.commit"] = commit
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        recorder = cls(experiment_id, run.info.run_id)
        params = {}
        for group in ("data", "model", "search", "tuner", "training"):
            params.update(flatten(group, getattr(settings, group)))
        recorder.log_params(recorder.parent_run_id, params)
        client.log_text(recorder.parent_run_id, redact_text(settings.resolved_config), "config.yaml")
        return recorder

    @classmethod
    def reopen(cls, run_id: str, ended: Dict[str, dict]) -> "SweepRecorder":
        """Continue a sweep's parent run after its process stopped.

        The parent is set RUNNING again and tagged `tune.resumed` (how many times). A child
        run still RUNNING belongs to a trial the process was in when it stopped: if the
        tuner had already ended that trial (`ended`), the run is closed with the tuner's
        status and summary; otherwise it is closed KILLED, and the tuner runs the trial again
        in a new child run.

        Args:
            run_id: the parent run.
            ended: keras-tuner trial id -> {"status": ..., "summary": {...}} of ended trials.
        """
        client = MlflowClient()
        parent = client.get_run(run_id)
        recorder = cls(parent.info.experiment_id, run_id)
        runs = client.search_runs(
            [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", order_by=["attributes.start_time ASC"]
        )  # fmt: skip
        for run in runs:
            trial_id = run.data.tags.get("tune.trial_id")
            if run.info.status == "RUNNING":
                recorder.trial_runs[trial_id] = run.info.run_id
                if trial_id in ended:
                    recorder.end_trial(trial_id, ended[trial_id]["status"], ended[trial_id]["summary"])
                    continue
                client.set_tag(run.info.run_id, "tune.error", "interrupted: the sweep stopped during this trial; it ran again on resume")
                client.set_terminated(run.info.run_id, "KILLED")
                del recorder.trial_runs[trial_id]
            elif run.info.status != "KILLED":
                recorder.trial_runs[trial_id] = run.info.run_id
        resumed = int(parent.data.tags.get("tune.resumed", "0")) + 1
        client.set_tag(run_id, "tune.resumed", str(resumed))
        client.update_run(run_id, status="RUNNING")
        return recorder

    def log_params(self, run_id: str, params: Dict[str, Any]) -> None:
        """Log params in batches of 100 (MLflow's limit per request)."""
        items = [mlflow.entities.Param(k, str(v)[:_MAX_PARAM]) for k, v in params.items()]
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

    def start_trial(self, trial_id: str, values: Dict[str, Any]) -> str:
        """Create the trial's child run with its hyperparameter values as params."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial {trial_id}",
            tags={"mlflow.parentRunId": self.parent_run_id, "tune.role": "trial", "tune.trial_id": trial_id},
        )
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
        for run_id in self.trial_runs.values():
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_tag(run_id, "tune.error", f"the sweep ended ({status}) during this trial")
                self.client.set_terminated(run_id, "FAILED" if status == "FINISHED" else status)
        self.client.set_terminated(self.parent_run_id, status)


def log_registered_model(recorder: SweepRecorder, model, class_names: List[str], sample, cfg: TrackingConfig):
    """Log `model` on the parent run, register it as a new version and give it `cfg.alias`.

    Args:
        recorder: the sweep's recorder; the model is logged under its parent run.
        model: the trained classifier; float32 `(batch, h, w, 3)` RGB [0, 255] in,
            `(batch, num_classes)` probabilities out.
        class_names: label i is `class_names[i]`; stored in the MLmodel metadata.
        sample: a few input images, float32 `(n, h, w, 3)`, for the signature.
        cfg: registered model name and alias.

    Returns:
        The `ModelVersion` registered.
    """
    from mlflow.models import infer_signature

    signature = infer_signature(sample, model.predict(sample, verbose=0))
    client = recorder.client
    client.log_text(recorder.parent_run_id, json.dumps(class_names, indent=1), "class_names.json")
    with mlflow.start_run(run_id=recorder.parent_run_id):
        info = mlflow.keras.log_model(
            model, name="model", signature=signature,
            metadata={"class_names": class_names}, registered_model_name=cfg.registered_model_name,
        )  # fmt: skip
    version = client.get_model_version(cfg.registered_model_name, str(info.registered_model_version))
    client.set_registered_model_alias(cfg.registered_model_name, cfg.alias, version.version)
    client.set_model_version_tag(cfg.registered_model_name, version.version, "class_names", json.dumps(class_names))
    return version
