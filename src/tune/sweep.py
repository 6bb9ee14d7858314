"""One sweep, start to finish: checks, data, search, test evaluation, registered model.

`run_sweep` is the pure core behind `python -m tune`: it takes typed `Settings`, returns a
`SweepResult`, and tests call it directly.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import keras
import keras_tuner as kt
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tune import synthetic
from tune.artifacts import log_sweep_artifacts
from tune.backbones import build_base
from tune.checks import OBJECTIVES, base_names, check_settings, image_size
from tune.config import Settings
from tune.data import SearchData, load_search_data, load_test_data
from tune.errors import ConfigError, TuneError
from tune.hypermodel import TransferHyperModel, trial_values
from tune.model import feature_statistics
from tune.random_init import unit_variance_base
from tune.project import TunerProject, definition
from tune.tables import summary_table, write_csv
from tune.tracking import SweepRecorder, log_registered_model, open_store
from tune.tuner import TUNERS

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What a sweep produced.

    Attributes:
        objective: the objective's name, e.g. "val_accuracy".
        best_score: the best trial's objective value (accuracy in [0, 1], or a loss).
        best_values: the best trial's hyperparameter values.
        model: the best trial's model, restored from its best epoch.
        class_names: label i is `class_names[i]`.
        test_metrics: `test_loss` and `test_accuracy` of `model` on the test folder.
        parent_run_id: the sweep's MLflow run.
        model_version: the registered model version (a string number).
        trial_statuses: keras-tuner trial id -> COMPLETED, FAILED or INVALID.
        summary: a text table of the top trials, for the terminal.
        tuner: the keras-tuner tuner, for inspection.
        resumed: this call continued a sweep that had been interrupted.
        already_finished: the sweep had finished before; this call ran nothing.
    """

    objective: str
    best_score: float
    best_values: Dict[str, Any]
    model: keras.Model
    class_names: List[str]
    test_metrics: Dict[str, float]
    parent_run_id: str
    model_version: str
    trial_statuses: Dict[str, str] = field(default_factory=dict)
    tuner: Any = None
    summary: str = ""
    resumed: bool = False
    already_finished: bool = False


def prepare(settings: Settings) -> tuple:
    """Check the config, generate synthetic data if asked, and fetch weights once.

    Returns:
        (height, width) of the images the sweep uses.

    Raises:
        ConfigError, DataError, WeightsUnavailableError: before any run is recorded.
    """
    check_settings(settings, TUNERS)
    data = settings.data
    if data.synthetic is not None:
        synthetic.generate(Path(data.root), data.synthetic, data.train_dir, data.test_dir)
    size = image_size(settings)
    if settings.model.weights is not None:
        for name in base_names(settings.search.base_model):
            build_base(name, size, settings.model.weights)  # downloads or reads the weights now
    return size


def base_weights(settings: Settings, size: tuple, data: SearchData, folder: Path) -> Dict[str, Optional[str]]:
    """Base model name -> the weights its trials start from.

    With `model.weights=null` each base is initialised once per tuner project, scaled to unit
    variance on training images (see `tune.random_init`) and saved under `folder/bases/`; a
    resumed sweep reuses that file, so every trial of a search starts from the same base.
    """
    names = base_names(settings.search.base_model)
    if settings.model.weights is not None:
        return {name: settings.model.weights for name in names}
    weights = {}
    for name in names:
        saved = folder / "bases" / f"{name}-{size[0]}x{size[1]}-unit-variance.weights.h5"
        weights[name] = str(saved if saved.exists() else unit_variance_base(name, size, data.sample[:16], saved.parent))
    return weights


def base_init(weights: Optional[str]) -> str:
    """How the bases were initialised, in words, for the sweep's `tune.base_init` tag."""
    if weights is None:
        return "random, scaled to unit variance on training images (no pretraining)"
    return "imagenet" if weights == "imagenet" else f"file {weights}"


def head_statistics(settings: Settings, size: tuple, weights: Dict[str, Optional[str]], data: SearchData, folder: Path):
    """Base model name -> (mean, variance) of its pooled features, or None when not standardising.

    Kept in `folder/bases/<name>-statistics.npz`, so a resumed sweep's trials use the
    statistics its earlier trials used.
    """
    if not settings.model.head.standardize:
        return {name: None for name in weights}
    statistics = {}
    for name, path in weights.items():
        saved = folder / "bases" / f"{name}-statistics.npz"
        if not saved.exists():
            mean, variance = feature_statistics(name, size, path, settings.model.head.pooling, data.sample)
            saved.parent.mkdir(parents=True, exist_ok=True)
            np.savez(saved, mean=mean, variance=variance)
        with np.load(saved) as stored:
            statistics[name] = (stored["mean"], stored["variance"])
    return statistics


def make_tuner(settings: Settings, hypermodel: TransferHyperModel, project: TunerProject, resume: bool):
    """The configured keras-tuner tuner in `project`'s folder; `resume` reloads its trials."""
    options = dict(settings.tuner.options)
    options.setdefault("seed", settings.seed)
    objective = kt.Objective(settings.tuner.objective, OBJECTIVES[settings.tuner.objective])
    try:
        tuner = TUNERS[settings.tuner.name](
            hypermodel=hypermodel, objective=objective, directory=str(project.folder),
            project_name="keras_tuner", overwrite=not resume, **options,
        )  # fmt: skip
    except TypeError as err:
        raise ConfigError(f"tuner.options={options} do not fit tuner '{settings.tuner.name}': {err}") from None
    return tuner


def run_sweep(settings: Settings) -> SweepResult:
    """Search the space, record every trial, evaluate and register the best model.

    Rerunning the same search resumes it: trials that ended are kept, the one interrupted
    runs again, and MLflow records go on in the same parent run. A search that already
    finished is reported, not run again (`tuner.overwrite=true` starts it afresh).

    Raises:
        ConfigError, DataError, WeightsUnavailableError: before any trial.
        ProjectBusyError: the same search is running in another process.
        TuneError: no trial completed, or too many failed in a row (the first failure shown).
    """
    keras.utils.set_random_seed(settings.seed)
    size = prepare(settings)
    data = load_search_data(settings.data, size, settings.training.augment, Path(settings.cache_dir))
    project = TunerProject(Path(settings.tuner_dir), definition(settings, data.fingerprint), settings.tuner.overwrite)
    try:
        return _run(settings, size, data, project)
    finally:
        project.release()


def _run(settings: Settings, size: tuple, data: SearchData, project: TunerProject) -> SweepResult:
    weights = base_weights(settings, size, data, project.folder)
    objective = settings.tuner.objective
    hypermodel = TransferHyperModel(
        settings.search, len(data.class_names), size, weights, head_statistics(settings, size, weights, data, project.folder),
        settings.model.head, settings.training, objective, OBJECTIVES[objective],
    )  # fmt: skip
    experiment_id = open_store(settings.tracking)
    parent = previous_run(project)
    tuner = make_tuner(settings, hypermodel, project, resume=parent is not None)
    if parent is not None and parent.info.status == "FINISHED":
        return _already_finished(settings, tuner, parent)
    recorder, rows = _recorder(settings, experiment_id, project, parent, tuner, data)
    try:
        tuner.track(recorder, data.validation, data.class_names, project.folder, rows)
        _search(settings, tuner, data)
        result = _finish(settings, tuner, recorder, data, size, project.folder)
    except BaseException as err:  # record how it ended, then let it propagate
        recorder.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    recorder.finish("FINISHED")
    result.resumed = parent is not None
    return result


def previous_run(project: TunerProject):
    """The MLflow run `project` wrote to before, if it still exists in the store; else None."""
    if not project.parent_run_id:
        return None
    try:
        run = MlflowClient().get_run(project.parent_run_id)
    except MlflowException:
        run = None
    if run is None or run.info.lifecycle_stage != "active":
        log.warning("tuner project %s: its MLflow run %s is not in this store; starting the search afresh", project.key, project.parent_run_id)
        return None
    return run


def _recorder(settings: Settings, experiment_id: str, project: TunerProject, parent, tuner, data: SearchData):
    """A recorder on a new parent run, or on `parent` reopened; and the rows of ended trials."""
    if parent is None:
        bases = "+".join(base_names(settings.search.base_model))
        tags = {"tune.base_init": base_init(settings.model.weights), "tune.project": project.key}
        run_name = f"sweep {bases} {time.strftime('%Y-%m-%d %H:%M:%S')}"
        recorder = SweepRecorder.start(experiment_id, settings, run_name, tags)
        project.set_parent_run(recorder.parent_run_id)
        recorder.log_metrics(recorder.parent_run_id, {"baseline_val_accuracy": data.baseline_accuracy})
        log_data_report(recorder, data)
        return recorder, []
    oracle = tuner.oracle
    ended = {tid: {"status": oracle.trials[tid].status, "summary": _summary(oracle, tid)} for tid in oracle.end_order}
    recorder = SweepRecorder.reopen(parent.info.run_id, ended)
    log.info(
        "resuming sweep run %s: %d trial(s) already ended, %s", parent.info.run_id, len(oracle.end_order),
        "the interrupted one runs again" if oracle._retry_queue else "none was interrupted",
    )  # fmt: skip
    return recorder, ended_rows(oracle, recorder)


def _summary(oracle, trial_id: str) -> Dict[str, float]:
    trial = oracle.trials[trial_id]
    return {f"best_{oracle.objective.name}": trial.score} if trial.status == "COMPLETED" else {}


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
            "epochs_head": int(metrics.get("epochs_head", 0)), "epochs_fine_tune": int(metrics.get("epochs_fine_tune", 0)),
            "seconds": float(metrics.get("trial_seconds", 0.0)),
        })  # fmt: skip
    return rows


def _search(settings: Settings, tuner, data: SearchData) -> None:
    """`tuner.search`, turning keras-tuner's consecutive-failure stop into a `TuneError`."""
    try:
        tuner.search(data.train, validation_data=data.validation, verbose=0)  # our log lines instead
    except RuntimeError as err:
        if "consecutive failures" not in str(err):
            raise
        raise TuneError(failure_report(tuner.oracle, settings)) from None


def failure_report(oracle, settings: Settings) -> str:
    """Why the search stopped: how many trials failed in a row, and the first failure's error."""
    limit = oracle.max_consecutive_failed_trials
    run = []
    for trial_id in oracle.end_order:
        run = run + [trial_id] if oracle.trials[trial_id].status == "FAILED" else []
    first = oracle.trials[run[0]] if run else None
    message = (first.message or "").strip().splitlines()[-12:] if first else []
    return "\n".join([
        f"{limit} trials failed in a row (tuner.options.max_consecutive_failed_trials={limit}); the search stopped.",
        f"The first of them, trial {first.trial_id} ({trial_values(first.hyperparameters)}), failed with:" if first else "",
        *("    " + line for line in message),
    ])  # fmt: skip


def _already_finished(settings: Settings, tuner, parent) -> SweepResult:
    """The result of a search that finished before, read back from its record; nothing runs."""
    best = tuner.oracle.get_best_trials(1)[0]
    recorder = SweepRecorder(parent.info.experiment_id, parent.info.run_id)
    runs = recorder.client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    recorder.trial_runs = {r.data.tags["tune.trial_id"]: r.info.run_id for r in runs if r.info.status != "KILLED"}
    rows = ended_rows(tuner.oracle, recorder)
    objective, direction = settings.tuner.objective, OBJECTIVES[settings.tuner.objective]
    metrics = parent.data.metrics
    return SweepResult(
        objective=objective, best_score=float(best.score), best_values=trial_values(best.hyperparameters),
        model=tuner.load_model(best), class_names=json.loads(parent.data.tags.get("tune.class_names", "[]")),
        test_metrics={k: v for k, v in metrics.items() if k.startswith("test_")}, parent_run_id=parent.info.run_id,
        model_version=parent.data.tags.get("tune.model_version", "?"),
        trial_statuses={t.trial_id: t.status for t in tuner.oracle.trials.values()}, tuner=tuner,
        summary=summary_table(rows, objective, direction), already_finished=True,
    )  # fmt: skip


def _finish(settings: Settings, tuner, recorder: SweepRecorder, data: SearchData, size: tuple, folder: Path) -> SweepResult:
    """Pick the best trial, evaluate it on the test folder, register it (once per best trial)."""
    statuses = {t.trial_id: t.status for t in tuner.oracle.trials.values()}
    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials:
        raise TuneError(f"no trial completed; trial statuses: {statuses}")
    best = best_trials[0]
    values = trial_values(best.hyperparameters)
    recorder.mark_best(best.trial_id, settings.tuner.objective, best.score, values)
    objective, direction = settings.tuner.objective, OBJECTIVES[settings.tuner.objective]
    log_sweep_artifacts(recorder, tuner.rows, objective, direction, best.trial_id, folder)
    model = tuner.load_model(best)
    test = load_test_data(settings.data, size, data.class_names, Path(settings.cache_dir))  # first use of the test folder
    metrics = model.evaluate(test, return_dict=True, verbose=0)
    test_metrics = {f"test_{k}": float(v) for k, v in metrics.items()}
    recorder.log_metrics(recorder.parent_run_id, test_metrics)
    sample = np.concatenate([x for x, _ in data.validation.take(1)])[:4]
    version = registered_version(recorder, best.trial_id)
    if version is None:
        version = log_registered_model(recorder, model, data.class_names, sample, settings.tracking).version
        tags = {"tune.model_version": str(version), "tune.registered_trial": best.trial_id, "tune.class_names": json.dumps(data.class_names)}
        for key, value in tags.items():
            recorder.client.set_tag(recorder.parent_run_id, key, value)
    return SweepResult(
        objective=settings.tuner.objective, best_score=float(best.score), best_values=values,
        model=model, class_names=data.class_names, test_metrics=test_metrics,
        parent_run_id=recorder.parent_run_id, model_version=str(version),
        trial_statuses=statuses, tuner=tuner, summary=summary_table(tuner.rows, objective, direction),
    )  # fmt: skip


def registered_version(recorder: SweepRecorder, trial_id: str) -> Optional[str]:
    """The model version this sweep already registered for `trial_id` (before an interruption)."""
    tags = recorder.client.get_run(recorder.parent_run_id).data.tags
    return tags.get("tune.model_version") if tags.get("tune.registered_trial") == trial_id else None


def log_data_report(recorder: SweepRecorder, data: SearchData) -> None:
    """Log the skipped files (`skipped_files.csv`, metric `skipped_files`) and say so."""
    skipped = list(getattr(data, "skipped", []))
    recorder.log_metrics(recorder.parent_run_id, {"skipped_files": len(skipped)})
    if not skipped:
        return
    rows = [[s.split, s.path, s.reason] for s in skipped]
    recorder.client.log_text(recorder.parent_run_id, write_csv(["split", "path", "reason"], rows), "skipped_files.csv")
    log.warning("skipped %d file(s), listed in skipped_files.csv of run %s:", len(skipped), recorder.parent_run_id)
    for s in skipped[:10]:
        log.warning("  %s: %s", s.path, s.reason)
