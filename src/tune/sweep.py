"""One sweep, start to finish: checks, data, search, test evaluation, registered model.

`run_sweep` is the pure core behind `python -m tune`: it takes typed `Settings`, returns a
`SweepResult`, and tests call it directly.
"""

from __future__ import annotations

import time
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
from tune.tables import summary_table
from tune.tracking import SweepRecorder, log_registered_model, open_store
from tune.tuner import TUNERS


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


def base_weights(settings: Settings, size: tuple, data: SearchData) -> Dict[str, Optional[str]]:
    """Base model name -> the weights its trials start from.

    With `model.weights=null` each base is initialised once, scaled to unit variance on
    training images (see `tune.random_init`) and saved under `<output_dir>/bases/`.
    """
    names = base_names(settings.search.base_model)
    if settings.model.weights is not None:
        return {name: settings.model.weights for name in names}
    folder = Path(settings.output_dir) / "bases"
    return {name: str(unit_variance_base(name, size, data.sample[:16], folder)) for name in names}


def base_init(weights: Optional[str]) -> str:
    """How the bases were initialised, in words, for the sweep's `tune.base_init` tag."""
    if weights is None:
        return "random, scaled to unit variance on training images (no pretraining)"
    return "imagenet" if weights == "imagenet" else f"file {weights}"


def head_statistics(settings: Settings, size: tuple, weights: Dict[str, Optional[str]], data: SearchData):
    """Base model name -> (mean, variance) of its pooled features, or None when not standardising."""
    head = settings.model.head
    if not head.standardize:
        return {name: None for name in weights}
    return {name: feature_statistics(name, size, w, head.pooling, data.sample) for name, w in weights.items()}


def make_tuner(settings: Settings, hypermodel: TransferHyperModel):
    """The configured keras-tuner tuner, writing its state under `settings.output_dir`."""
    options = dict(settings.tuner.options)
    options.setdefault("seed", settings.seed)
    objective = kt.Objective(settings.tuner.objective, OBJECTIVES[settings.tuner.objective])
    try:
        tuner = TUNERS[settings.tuner.name](
            hypermodel=hypermodel, objective=objective, directory=settings.output_dir,
            project_name="tuner", overwrite=True, **options,
        )  # fmt: skip
    except TypeError as err:
        raise ConfigError(f"tuner.options={options} do not fit tuner '{settings.tuner.name}': {err}") from None
    return tuner


def run_sweep(settings: Settings) -> SweepResult:
    """Search the space, record every trial, evaluate and register the best model.

    Raises:
        ConfigError, DataError, WeightsUnavailableError: before any trial.
        TuneError: no trial completed.
    """
    keras.utils.set_random_seed(settings.seed)
    size = prepare(settings)
    data = load_search_data(settings.data, size, settings.training.augment, Path(settings.output_dir).parent / ".cache")
    objective = settings.tuner.objective
    weights = base_weights(settings, size, data)
    hypermodel = TransferHyperModel(
        settings.search, len(data.class_names), size, weights, head_statistics(settings, size, weights, data),
        settings.model.head, settings.training, objective, OBJECTIVES[objective],
    )  # fmt: skip
    tuner = make_tuner(settings, hypermodel)
    bases = "+".join(weights)
    recorder = SweepRecorder(
        open_store(settings.tracking), settings, run_name=f"sweep {bases} {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    recorder.client.set_tag(recorder.parent_run_id, "tune.base_init", base_init(settings.model.weights))
    try:
        recorder.log_metrics(recorder.parent_run_id, {"baseline_val_accuracy": data.baseline_accuracy})
        tuner.track(recorder, data.validation, data.class_names, Path(settings.output_dir))
        tuner.search(data.train, validation_data=data.validation, verbose=0)  # our log lines instead
        result = _finish(settings, tuner, recorder, data, size)
    except BaseException as err:  # record how it ended, then let it propagate
        recorder.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    recorder.finish("FINISHED")
    return result


def _finish(settings: Settings, tuner, recorder: SweepRecorder, data: SearchData, size: tuple) -> SweepResult:
    """Pick the best trial, evaluate it on the test folder, register it."""
    statuses = {t.trial_id: t.status for t in tuner.oracle.trials.values()}
    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials:
        raise TuneError(f"no trial completed; trial statuses: {statuses}")
    best = best_trials[0]
    values = trial_values(best.hyperparameters)
    recorder.mark_best(best.trial_id, settings.tuner.objective, best.score, values)
    objective, direction = settings.tuner.objective, OBJECTIVES[settings.tuner.objective]
    log_sweep_artifacts(recorder, tuner.rows, objective, direction, best.trial_id, Path(settings.output_dir))
    model = tuner.load_model(best)
    test = load_test_data(settings.data, size, data.class_names, Path(settings.output_dir).parent / ".cache")
    metrics = model.evaluate(test, return_dict=True, verbose=0)
    test_metrics = {f"test_{k}": float(v) for k, v in metrics.items()}
    recorder.log_metrics(recorder.parent_run_id, test_metrics)
    sample = np.concatenate([x for x, _ in data.validation.take(1)])[:4]
    version = log_registered_model(recorder, model, data.class_names, sample, settings.tracking)
    return SweepResult(
        objective=settings.tuner.objective, best_score=float(best.score), best_values=values,
        model=model, class_names=data.class_names, test_metrics=test_metrics,
        parent_run_id=recorder.parent_run_id, model_version=str(version.version),
        trial_statuses=statuses, tuner=tuner, summary=summary_table(tuner.rows, objective, direction),
    )  # fmt: skip
