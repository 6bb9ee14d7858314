"""keras-tuner tuners that record each trial as an MLflow child run and report progress.

The recording is a mixin over keras-tuner's documented hooks (`on_search_begin`,
`on_trial_begin`, `on_epoch_end`, `on_trial_end`), each calling `super()`; the search itself
is keras-tuner's. `TUNERS` maps the config's `tuner.name` to a class.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import keras_tuner as kt
import numpy as np

from tune.artifacts import log_trial_artifacts
from tune.hypermodel import trial_values
from tune.resources import process_rss_mb, release_traced_gradients
from tune.tracking import SweepRecorder

log = logging.getLogger(__name__)
# Reloading a trial's best checkpoint for evaluation needs no optimizer state.
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")


class _NewModelRetracing(logging.Filter):
    """Drops TensorFlow's retracing warning: every trial builds a new model, so it is expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_NewModelRetracing())


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def describe(values: dict) -> str:
    """Hyperparameter values as `name=value` pairs, floats to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def failure_reason(message: str) -> str:
    """The last line of a failed trial's traceback (keras-tuner keeps the whole of it)."""
    lines = (message or "").strip().splitlines()
    return lines[-1] if lines else "no score"


def failure_report(oracle) -> str:
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



class TrialTracking:
    """Mixin for a `keras_tuner.Tuner`: one MLflow child run per trial, with its figures.

    Call `track(...)` before `search`. After it, `rows` holds one row per trial (the format
    of `tune.tables`).
    """

    def track(self, recorder: SweepRecorder, validation, class_names: List[str], folder: Path, rows=()) -> None:
        """Set where trials are recorded and what their validation report is computed on.

        Args:
            recorder: writes the MLflow runs.
            validation: the validation batches (images, labels), in a fixed order.
            class_names: label i is `class_names[i]`.
            folder: the tuner project folder; trial files go to `folder/trials/<id>/`.
            rows: rows of trials that ended before a resume, in the order they ended.
        """
        self.recorder, self.validation, self.class_names, self.folder = recorder, validation, class_names, folder
        self.validation_labels = np.concatenate([y for _, y in validation])
        self.rows: List[dict] = list(rows)

    def on_search_begin(self):
        super().on_search_begin()
        self._search_started, self._trial_seconds = time.monotonic(), []

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._trial_started = time.monotonic()
        self._epochs = {"head": 0, "fine_tune": 0}
        self._history: Dict[str, List[float]] = {}
        values = trial_values(trial.hyperparameters)
        self.recorder.start_trial(trial.trial_id, values)
        log.info("trial %s started: %s | %s", self._counter(trial), describe(values), self._timing())

    def on_epoch_end(self, trial, model, epoch, logs=None):
        super().on_epoch_end(trial, model, epoch, logs=logs)
        phase = "head" if model.get_layer("base_model").trainable is False else "fine_tune"
        self._epochs[phase] += 1
        for key, value in (logs or {}).items():
            self._history.setdefault(key, []).append(float(value))
        self.recorder.log_epoch(trial.trial_id, epoch, logs or {})

    def on_trial_end(self, trial):
        seconds = time.monotonic() - self._trial_started
        try:
            super().on_trial_end(trial)  # the oracle scores the trial here (NaN -> INVALID)
        finally:
            release_traced_gradients()  # else every trial's weights stay in memory
            self._record(self.oracle.get_trial(trial.trial_id), seconds)

    def _record(self, trial, seconds: float) -> None:
        """Log the ended trial's summary, figures and status, and one progress line."""
        score = trial.score if trial.status == "COMPLETED" else None
        row = {
            "trial_id": trial.trial_id, "status": trial.status, "values": trial_values(trial.hyperparameters),
            "score": score, "epochs_head": self._epochs["head"], "epochs_fine_tune": self._epochs["fine_tune"],
            "seconds": seconds,
        }  # fmt: skip
        self.rows.append(row)
        self._trial_seconds.append(seconds)
        log_trial_artifacts(
            self.recorder, trial.trial_id, self.folder / "trials" / trial.trial_id, self._history,
            row["epochs_head"] if row["epochs_fine_tune"] else None, self._evaluate(trial), self.class_names,
        )  # fmt: skip
        summary = {f"best_{self.oracle.objective.name}": score, "trial_seconds": seconds}
        summary.update(epochs_head=row["epochs_head"], epochs_fine_tune=row["epochs_fine_tune"])
        summary["process_rss_mb"] = process_rss_mb()  # MB resident now: the sweep's memory curve
        self.recorder.end_trial(trial.trial_id, trial.status, summary, trial.message or "")
        result = f"{self.oracle.objective.name} {score:.4f}" if score is not None else failure_reason(trial.message)
        log.info("trial %s %s in %s: %s | %s", self._counter(trial), trial.status, clock(seconds), result, self._timing())

    def _evaluate(self, trial) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(true, predicted) validation labels of the trial's best checkpoint; None if it failed."""
        if trial.status != "COMPLETED":
            return None
        probabilities = self.load_model(trial).predict(self.validation, verbose=0)  # (n, classes)
        return self.validation_labels, np.argmax(probabilities, axis=1)

    def _counter(self, trial) -> str:
        """`<id> (k/N)`: keras-tuner's trial id, then its place k of N (`?` without max_trials)."""
        total = getattr(self.oracle, "max_trials", None)
        return f"{trial.trial_id} ({int(trial.trial_id) + 1}/{total or '?'})"

    def _timing(self) -> str:
        """Elapsed time, an ETA from the mean trial time, and the best objective so far."""
        elapsed = time.monotonic() - self._search_started
        parts = [f"elapsed {clock(elapsed)}"]
        total = getattr(self.oracle, "max_trials", None)
        if total and self._trial_seconds:
            remaining = max(total - len(self.rows), 0)
            parts.append(f"ETA {clock(remaining * sum(self._trial_seconds) / len(self._trial_seconds))}")
        best = self.oracle.get_best_trials(1)
        if best and best[0].score is not None:
            parts.append(f"best {self.oracle.objective.name} {best[0].score:.4f} (trial {best[0].trial_id})")
        return ", ".join(parts)


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
