"""How a search ends: the best completed trial checked against the majority-class baseline,
refitted on training + validation images (`tuner.refit`), evaluated on the test folder and
registered once, or a one-line account of why nothing completed; and the result of a search
that had finished."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import keras
import keras_tuner as kt
import numpy as np

from tune.config.schema import TrackingConfig
from tune.data.pipeline import SearchData
from tune.errors import SearchFailedError
from tune.model.inference import score_images
from tune.model.space import log_sampled, trial_values
from tune.reports.artifacts import log_sweep_artifacts
from tune.reports.tables import summary_table
from tune.search.baseline import BaselineCheck, check_baseline
from tune.search.refit import Refit, RefitPlan, record_refit, refit_best
from tune.search.tuners import completed_best
from tune.tracking import resume
from tune.tracking.recorder import SweepRecorder
from tune.tracking.records import TrialRecord
from tune.tracking.registry import load_classifier, register_model

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What a sweep produced.

    Attributes:
        objective: the objective's name, e.g. "val_accuracy".
        best_score: the best completed trial's objective value (accuracy in [0, 1], or a loss).
        best_values: the best trial's hyperparameter values.
        model: the registered model: the refit of the best trial's configuration on
            training + validation images (`tuner.refit=true`), or the best trial's own
            model, restored from its best epoch.
        class_names: label i is `class_names[i]`.
        test_metrics: `test_loss` and `test_accuracy` of `model` on the test folder.
        parent_run_id: the sweep's MLflow run.
        model_version: the registered model version (a string number).
        records: every ended trial, in the order they ended.
        trial_statuses: keras-tuner trial id -> COMPLETED, FAILED, ...
        summary: a text table of the top trials, for the terminal.
        tuner: the keras-tuner tuner, for inspection.
        resumed: this call continued a sweep that had been interrupted.
        already_finished: the sweep had finished before; this call ran nothing.
        experiment_id: the MLflow experiment of `parent_run_id`.
        baseline_accuracy: validation accuracy of always answering the commonest training
            class, in [0, 1]; None when unknown.
        best_val_accuracy: the best trial's validation accuracy (its kept epoch), in [0, 1];
            None when unrecorded.
        below_baseline: the best trial does not beat `baseline_accuracy` by `tuner.baseline_margin`.
        baseline_warning: one line saying so when `below_baseline`; "" otherwise.
        refit: what the refit trained (epochs, images, seconds); None when the trial's own
            model is registered, or the model came from the registry.
    """

    objective: str
    best_score: float
    best_values: Dict[str, Any]
    model: keras.Model
    class_names: List[str]
    test_metrics: Dict[str, float]
    parent_run_id: str
    model_version: str
    records: List[TrialRecord] = field(default_factory=list)
    trial_statuses: Dict[str, str] = field(default_factory=dict)
    summary: str = ""
    tuner: Any = None
    resumed: bool = False
    already_finished: bool = False
    experiment_id: str = ""
    baseline_accuracy: Optional[float] = None
    best_val_accuracy: Optional[float] = None
    below_baseline: bool = False
    baseline_warning: str = ""
    refit: Optional[Refit] = None


def finish(
    tuner,
    recorder: SweepRecorder,
    data: SearchData,
    tracking: TrackingConfig,
    baseline_margin: float = 0.05,
    refit: Optional[RefitPlan] = None,
) -> SweepResult:
    """Log the sweep's tables and figures, check the best completed trial against the baseline,
    refit its configuration when asked, then evaluate that model on the test split and register it.

    A sweep that registered a model before it was interrupted registers nothing more: that
    version is reloaded and evaluated again, not refitted.

    Args:
        tuner: the tuner after its search.
        recorder: the sweep's recorder.
        data: the search data (class names, validation batches for the signature, the
            test split's images: exactly those listed in the run's data/test_files.txt).
        tracking: registered model name and alias.
        baseline_margin: how much the best trial's validation accuracy must beat the
            majority-class baseline by, in [0, 1] (`tuner.baseline_margin`).
        refit: how to refit the best configuration (`tuner.refit=true`); None registers
            the best trial's own model.

    Raises:
        SearchFailedError: no trial completed; nothing is evaluated or registered.
    """
    objective = tuner.oracle.objective
    best = completed_best(tuner.oracle)
    best_id = best.trial_id if best else None
    log_scaled = log_sampled(tuner.oracle.hyperparameters)
    log_sweep_artifacts(recorder, tuner.records, objective.name, objective.direction, best_id, tuner.folder, log_scaled)
    if best is None:
        raise SearchFailedError(no_completed_trial(tuner.records))
    values = trial_values(best.hyperparameters)
    recorder.mark_best(best.trial_id, objective.name, best.score, values)
    baseline = check_baseline(best, objective.name, data.baseline_accuracy, baseline_margin)
    _set_tags(recorder, baseline.tags())
    registered, done = resume.registered_version(recorder, best.trial_id), None
    if registered is None:
        model, done = _final_model(tuner, best, data, refit, recorder)
        record_refit(recorder, done)
    tags = recorder.client.get_run(recorder.parent_run_id).data.tags  # says which model is registered
    if registered is not None:  # registered before an interruption: that version, not a new refit
        model = _finished_model(tuner, best, tags, tracking.registered_model_name)
    test = data.test  # the test folder's images, or those carved out of one folder; their first use
    accuracy, loss = score_images(model, test.scan.images, test.rows, test.labels)
    test_metrics = {"test_accuracy": accuracy, "test_loss": loss}
    recorder.log_metrics(recorder.parent_run_id, test_metrics)
    version = registered or _register(recorder, model, data, best.trial_id, tracking)
    version_tags = {**baseline.tags(), "tune.registered_model": tags.get("tune.registered_model", "trial")}
    for key, value in version_tags.items():
        recorder.client.set_model_version_tag(tracking.registered_model_name, str(version), key, value)
    return SweepResult(
        objective=objective.name,
        best_score=float(best.score),
        best_values=values,
        model=model,
        class_names=data.class_names,
        test_metrics=test_metrics,
        parent_run_id=recorder.parent_run_id,
        model_version=str(version),
        records=list(tuner.records),
        trial_statuses={t.trial_id: t.status for t in tuner.oracle.trials.values()},
        summary=summary_table(tuner.records, objective.name, objective.direction),
        tuner=tuner,
        experiment_id=recorder.experiment_id,
        refit=done,
        **_baseline_fields(baseline),
    )


def _final_model(tuner, best, data: SearchData, plan: Optional[RefitPlan], recorder: SweepRecorder) -> tuple:
    """(the model to test and register, its `Refit` or None): the refit of `best` under `plan`,
    or `best`'s own model without a plan or when the refit fails (its loss turns NaN; the
    reason goes to the sweep run's tag `tune.refit_error`)."""
    if plan is None:
        return tuner.load_model(best), None
    try:
        done = refit_best(tuner, best, data.rows, plan, recorder)
    except kt.errors.FailedTrialError as err:  # e.g. the loss diverged on the larger set
        log.warning("the refit of trial %s failed (%s); registering the trial's own model instead", best.trial_id, err)
        recorder.client.set_tag(recorder.parent_run_id, "tune.refit_error", str(err)[:5000])
        return tuner.load_model(best), None
    return done.model, done


def _set_tags(recorder: SweepRecorder, tags: Dict[str, str]) -> None:
    """Set `tags` on the sweep's run."""
    for key, value in tags.items():
        recorder.client.set_tag(recorder.parent_run_id, key, value)


def _baseline_fields(check: BaselineCheck) -> Dict[str, Any]:
    """The `SweepResult` fields of a baseline check."""
    return dict(
        baseline_accuracy=check.baseline,
        best_val_accuracy=check.best,
        below_baseline=check.below,
        baseline_warning=check.warning(),
    )


def _register(recorder: SweepRecorder, model, data: SearchData, trial_id: str, tracking: TrackingConfig) -> str:
    """Register `model` from the sweep's run; tag the run with the version, trial and class names."""
    sample = np.concatenate([x for x, _ in data.validation.take(1)])[:4]  # (4, h, w, 3), for the signature
    version = str(
        register_model(
            recorder.parent_run_id, model, data.class_names, sample, tracking.registered_model_name, tracking.alias
        ).version
    )
    tags = {
        "tune.model_version": version,
        "tune.registered_trial": trial_id,
        "tune.class_names": json.dumps(data.class_names),
    }
    _set_tags(recorder, tags)
    return version


def no_completed_trial(records: List[TrialRecord]) -> str:
    """One line: no trial completed, how the trials ended, and the first one's reason."""
    statuses: Dict[str, int] = {}
    for record in records:
        statuses[record.status] = statuses.get(record.status, 0) + 1
    counts = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "none ended"
    first = f"; trial {records[0].trial_id} failed with: {records[0].reason}" if records else ""
    return f"no trial completed ({counts}){first}; nothing was registered"


def already_finished(tuner, parent, registered_model_name: str) -> SweepResult:
    """The result of a search that finished before, read back from its record; nothing runs.

    Its model is the registered version (`tune.model_version`) when that was a refit, else
    the best trial's own, reloaded from its checkpoint.
    """
    best = completed_best(tuner.oracle)
    if best is None:
        raise SearchFailedError(f"sweep run {parent.info.run_id} finished without a completed trial")
    _, records = resume.read_back(parent, tuner.oracle)
    objective = tuner.oracle.objective
    tags, metrics = parent.data.tags, parent.data.metrics
    return SweepResult(
        objective=objective.name,
        best_score=float(best.score),
        best_values=trial_values(best.hyperparameters),
        model=_finished_model(tuner, best, tags, registered_model_name),
        class_names=json.loads(tags.get("tune.class_names", "[]")),
        test_metrics={k: v for k, v in metrics.items() if k.startswith("test_")},
        parent_run_id=parent.info.run_id,
        model_version=tags.get("tune.model_version", "?"),
        records=records,
        trial_statuses={t.trial_id: t.status for t in tuner.oracle.trials.values()},
        summary=summary_table(records, objective.name, objective.direction),
        tuner=tuner,
        already_finished=True,
        experiment_id=parent.info.experiment_id,
        **_recorded_baseline(tags, metrics),
    )


def _finished_model(tuner, best, tags: Dict[str, str], registered_model_name: str) -> keras.Model:
    """A finished sweep's registered model: its refit from the registry, or the best trial's checkpoint."""
    if tags.get("tune.registered_model") == "refit":
        return load_classifier(f"models:/{registered_model_name}/{tags['tune.model_version']}")
    return tuner.load_model(best)


def _recorded_baseline(tags: Dict[str, str], metrics: Dict[str, float]) -> Dict[str, Any]:
    """The baseline fields of a finished sweep, from its run's tags (a sweep that predates them: the metric)."""
    if "tune.baseline_margin" not in tags:
        return dict(baseline_accuracy=metrics.get("baseline_val_accuracy"))
    best = tags.get("tune.best_val_accuracy")
    check = BaselineCheck(
        float(tags["tune.baseline_val_accuracy"]),
        None if best is None else float(best),
        float(tags["tune.baseline_margin"]),
    )
    return _baseline_fields(check)
