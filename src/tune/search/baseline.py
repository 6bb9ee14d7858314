"""Does the best trial beat always guessing the commonest class? Checked once a search has its best.

The baseline is the validation accuracy of always answering the commonest training class
(`SearchData.baseline_accuracy`: 0.889 on a folder of 40 images of one class and 4 of
another). The best trial must beat it by `tuner.baseline_margin` in validation accuracy;
whatever the objective, the comparison is in accuracy: for `val_loss` (or a training
metric) it is the best trial's `val_accuracy` at the epoch its objective was best, the
epoch whose weights were kept. A best trial below that line is reported with a warning,
its registered model version is tagged `tune.below_baseline=true` with both figures, and
`tune.promote` does not make it champion unless forced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Optional

log = logging.getLogger(__name__)
ACCURACY = "val_accuracy"  # the figure compared with the baseline, whatever the objective


def val_accuracy_at_best(trial, objective: str) -> Optional[float]:
    """The validation accuracy of a completed keras-tuner trial's kept weights, in [0, 1]; None if unrecorded.

    Args:
        trial: a completed `keras_tuner` trial.
        objective: the objective's name; with `val_accuracy` that is the trial's score, else
            the trial's `val_accuracy` at its best step (epoch).
    """
    if objective == ACCURACY:
        return float(trial.score)
    if not trial.metrics.exists(ACCURACY):
        return None
    history = trial.metrics.get_history(ACCURACY)
    at_best = [obs.mean() for obs in history if obs.step == trial.best_step]
    return float(at_best[0]) if at_best else None


@dataclass(frozen=True)
class BaselineCheck:
    """The best trial's validation accuracy against the majority-class baseline.

    Attributes:
        baseline: validation accuracy of always answering the commonest class, in [0, 1].
        best: the best trial's validation accuracy, in [0, 1]; None when it was not recorded.
        margin: how much `best` must exceed `baseline` by (`tuner.baseline_margin`), in [0, 1].
    """

    baseline: float
    best: Optional[float]
    margin: float

    @property
    def below(self) -> bool:
        """True when `best` does not beat `baseline` by `margin` (float slack aside)."""
        return self.best is not None and self.best < self.baseline + self.margin - 1e-12

    def describe(self) -> str:
        """The two figures and the margin, e.g. `val_accuracy 0.6667 vs baseline 0.8889 + margin 0.0500`."""
        best = "unrecorded" if self.best is None else f"{self.best:.4f}"
        return f"{ACCURACY} {best} vs baseline {self.baseline:.4f} + margin {self.margin:.4f}"

    def warning(self) -> str:
        """One line for the log and the terminal when `below`; "" otherwise."""
        if not self.below:
            return ""
        return (
            f"the best trial does not beat always guessing the commonest class ({self.describe()}); "
            "its model is registered but tagged tune.below_baseline=true, and tune-promote keeps it "
            "from champion unless promote.force=true"
        )

    def tags(self) -> Dict[str, str]:
        """Tags of the registered model version (and the sweep run)."""
        tags = {
            "tune.below_baseline": str(self.below).lower(),
            "tune.baseline_val_accuracy": f"{self.baseline:.6f}",
            "tune.baseline_margin": f"{self.margin:.6f}",
        }
        if self.best is not None:
            tags["tune.best_val_accuracy"] = f"{self.best:.6f}"
        return tags


def check_baseline(trial, objective: str, baseline: float, margin: float) -> BaselineCheck:
    """Compare the best trial with the baseline; log a WARNING line when it does not beat it by `margin`."""
    check = BaselineCheck(baseline, val_accuracy_at_best(trial, objective), margin)
    if check.below:
        log.warning(check.warning())
    return check
