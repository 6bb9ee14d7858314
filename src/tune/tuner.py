"""keras-tuner tuners that record each trial as an MLflow child run.

The recording is a mixin over keras-tuner's documented hooks (`on_trial_begin`,
`on_epoch_end`, `on_trial_end`), each calling `super()`; the search itself is keras-tuner's.
`TUNERS` maps the config's `tuner.name` to a class.
"""

from __future__ import annotations

import time

import keras_tuner as kt

from tune.hypermodel import trial_values
from tune.tracking import SweepRecorder


class TrialTracking:
    """Mixin for a `keras_tuner.Tuner`: one MLflow child run per trial.

    Set `recorder` (a `SweepRecorder`) before `search`.
    """

    recorder: SweepRecorder

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._trial_started = time.monotonic()
        self._epochs = {"head": 0, "fine_tune": 0}
        self.recorder.start_trial(trial.trial_id, trial_values(trial.hyperparameters))

    def on_epoch_end(self, trial, model, epoch, logs=None):
        super().on_epoch_end(trial, model, epoch, logs=logs)
        phase = "head" if model.get_layer("base_model").trainable is False else "fine_tune"
        self._epochs[phase] += 1
        self.recorder.log_epoch(trial.trial_id, epoch, logs or {})

    def on_trial_end(self, trial):
        score = trial.score if trial.status == "COMPLETED" else None
        summary = {
            f"best_{self.oracle.objective.name}": score,
            "epochs_head": self._epochs["head"],
            "epochs_fine_tune": self._epochs["fine_tune"],
            "trial_seconds": time.monotonic() - self._trial_started,
        }
        self.recorder.end_trial(trial.trial_id, trial.status, summary, trial.message or "")
        super().on_trial_end(trial)


class TrackedRandomSearch(TrialTracking, kt.RandomSearch):
    """`keras_tuner.RandomSearch`, each trial an MLflow child run."""


class TrackedBayesianOptimization(TrialTracking, kt.BayesianOptimization):
    """`keras_tuner.BayesianOptimization`, each trial an MLflow child run."""


class TrackedHyperband(TrialTracking, kt.Hyperband):
    """`keras_tuner.Hyperband`, each trial an MLflow child run.

    Hyperband's epoch budget per trial is split between the phases by
    `TransferHyperModel.phase_epochs`.
    """


TUNERS = {
    "random": TrackedRandomSearch,
    "bayesian": TrackedBayesianOptimization,
    "hyperband": TrackedHyperband,
}
