"""One sweep, start to finish: checks, data, search, test evaluation, registered model.

`run_sweep` is the pure core behind `python -m tune`: it takes typed `Settings`, returns a
`SweepResult`, and tests call it directly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import keras
import keras_tuner as kt
import numpy as np

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
from tune.resume import ended_rows, finished_recorder, open_recorder, previous_run, registered_version
from tune.tables import summary_table
from tune.tracking import SweepRecorder, log_registered_model, open_store
from tune.tuner import TUNERS, failure_report

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
    return {name: str(unit_variance_base(name, size, data.sample[:16], folder / "bases")) for name in names}


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
    recorder, rows = open_recorder(settings, experiment_id, project, parent, tuner.oracle, data)
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


def _search(settings: Settings, tuner, data: SearchData) -> None:
    """`tuner.search`, turning keras-tuner's consecutive-failure stop into a `TuneError`."""
    try:
        tuner.search(data.train, validation_data=data.validation, verbose=0)  # our log lines instead
    except RuntimeError as err:
        if "consecutive failures" not in str(err):
            raise
        raise TuneError(failure_report(tuner.oracle)) from None


def _already_finished(settings: Settings, tuner, parent) -> SweepResult:
    """The result of a search that finished before, read back from its record; nothing runs."""
    best = tuner.oracle.get_best_trials(1)[0]
    rows = ended_rows(tuner.oracle, finished_recorder(parent))
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


