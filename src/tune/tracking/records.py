"""`TrialRecord`: what one ended trial leaves in a sweep's tables, figures and summaries.

Made from the keras-tuner trial when it ends (`from_trial`), or, for trials that ended
before a resume, from the same trial and the metrics its MLflow run holds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from tune.model.space import trial_values

COMPLETED = "COMPLETED"  # keras-tuner's status of a trial that produced a score


@dataclass
class TrialRecord:
    """One ended trial.

    Attributes:
        trial_id: keras-tuner's trial id, e.g. "00".
        status: keras-tuner's status: COMPLETED, FAILED, INVALID or STOPPED.
        values: the trial's hyperparameter values, e.g. {"learning_rate": 3e-4, ...}.
        score: the objective at the trial's best epoch; None unless COMPLETED with a number.
        epochs_head: epochs run in phase 1 (base frozen).
        epochs_fine_tune: epochs run in phase 2 (layers thawed).
        seconds: wall-clock time of the trial, or None when unknown.
        reason: why it failed, in one line (the last line of keras-tuner's message); "" if it did not.
        continues: the trial this one continues (Hyperband), or None.
    """

    trial_id: str
    status: str
    values: Dict[str, Any] = field(default_factory=dict)
    score: Optional[float] = None
    epochs_head: int = 0
    epochs_fine_tune: int = 0
    seconds: Optional[float] = None
    reason: str = ""
    continues: Optional[str] = None

    @classmethod
    def from_trial(cls, trial, epochs_head: int, epochs_fine_tune: int, seconds: Optional[float]) -> "TrialRecord":
        """The record of an ended keras-tuner `Trial`, with what the tuner itself does not keep."""
        score = trial.score if trial.status == COMPLETED else None
        return cls(
            trial_id=trial.trial_id,
            status=trial.status,
            values=trial_values(trial.hyperparameters),
            score=None if score is None or math.isnan(float(score)) else float(score),
            epochs_head=int(epochs_head),
            epochs_fine_tune=int(epochs_fine_tune),
            seconds=seconds,
            reason="" if trial.status == COMPLETED else last_line(trial.message),
            continues=trial.hyperparameters.values.get("tuner/trial_id") or None,
        )

    @classmethod
    def from_metrics(cls, trial, metrics: Mapping[str, float]) -> "TrialRecord":
        """The record of a trial that ended before a resume, from its MLflow run's metrics."""
        return cls.from_trial(
            trial,
            metrics.get("epochs_head", 0),
            metrics.get("epochs_fine_tune", 0),
            metrics.get("trial_seconds"),
        )

    @property
    def completed(self) -> bool:
        """Whether the trial completed with a score; only such trials can be the best."""
        return self.status == COMPLETED and self.score is not None


def last_line(message: Optional[str]) -> str:
    """Why a trial failed, from the last line of its traceback (keras-tuner keeps all of it).

    The exception's module path is dropped, and for keras-tuner's `FailedTrialError` (a
    failure `tune` explains, such as a NaN loss) its name too:
    "keras_tuner.src.errors.FailedTrialError: loss became nan ..." -> "loss became nan ...",
    "ZeroDivisionError: division by zero" stays. "no score" when there is no message.
    """
    lines = (message or "").strip().splitlines()
    if not lines:
        return "no score"
    name, sep, text = lines[-1].strip().partition(": ")
    if not sep or not re.fullmatch(r"[\w.]+", name):
        return lines[-1].strip()
    name = name.rsplit(".", 1)[-1]
    return text if name == "FailedTrialError" else f"{name}: {text}"
