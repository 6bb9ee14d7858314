"""The figures and tables each trial and each sweep leave in MLflow.

    trial run   curves.png           accuracy and loss, training vs validation, both phases
                confusion.png        validation confusion matrix of the trial's best epoch
                per_class.csv        validation precision, recall, F1 and support per class
    sweep run   trials.csv           one row per trial (see `tune.reports.tables.trials_table`)
                comparison.png       objective per trial, best so far, objective per hyperparameter
                best_trial_curves.png

Files are written under the sweep's output folder first (`trials/<id>/`), then logged.
Class names appear inside figures and tables only, never in MLflow keys.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tune.reports.figures import comparison_figure, confusion_figure, learning_curves
from tune.reports.tables import confusion_matrix, per_class_report, trials_table
from tune.tracking.recorder import SweepRecorder
from tune.tracking.records import TrialRecord


def log_trial_artifacts(
    recorder: SweepRecorder,
    trial_id: str,
    folder: Path,
    history: Dict[str, List[float]],
    fine_tune_start: Optional[int],
    evaluation: Optional[Tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    first_epoch: int = 0,
) -> None:
    """Write and log one trial's curves and, when it has a model, its validation report.

    Args:
        recorder: the sweep's recorder; files go to the trial's child run.
        trial_id: keras-tuner trial id.
        folder: where the files are written (created if missing).
        history: per-epoch Keras logs, key -> values in epoch order, both phases.
        fine_tune_start: index of the first fine-tuning epoch in `history`, or None.
        evaluation: (true labels, predicted labels), int `(n,)` each, on the validation
            split; None for a trial that produced no model.
        class_names: label i is `class_names[i]`.
        first_epoch: the epoch `history` starts at (a continued Hyperband trial's `initial_epoch`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    if history.get("loss"):
        files.append(learning_curves(history, fine_tune_start, folder / "curves.png", f"trial {trial_id}", first_epoch))
    if evaluation is not None:
        y_true, y_pred = evaluation
        matrix = confusion_matrix(y_true, y_pred, len(class_names))
        files.append(
            confusion_figure(matrix, class_names, folder / "confusion.png", title=f"validation, trial {trial_id}")
        )
        (folder / "per_class.csv").write_text(per_class_report(y_true, y_pred, class_names))
        files.append(folder / "per_class.csv")
    for path in files:
        recorder.client.log_artifact(recorder.trial_runs[trial_id], str(path))


def log_sweep_artifacts(
    recorder: SweepRecorder,
    records: List[TrialRecord],
    objective: str,
    direction: str,
    best_trial_id: Optional[str],
    folder: Path,
    log_scaled: Collection[str] = (),
) -> None:
    """Write and log the trials table, the comparison figure and the best trial's curves.

    Args:
        recorder: the sweep's recorder; files go to the parent run.
        records: every ended trial, in the order they ended.
        objective: the objective's name, e.g. "val_accuracy".
        direction: "max" or "min".
        best_trial_id: the best completed trial, whose curves are copied as
            best_trial_curves.png; None when no trial completed.
        folder: the sweep's output folder, holding `trials/<id>/curves.png`.
        log_scaled: hyperparameters sampled on a log scale, drawn on a log axis in comparison.png.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trials.csv").write_text(trials_table(records, objective))
    files = [
        folder / "trials.csv",
        comparison_figure(records, objective, direction, folder / "comparison.png", log_scaled),
    ]
    curves = folder / "trials" / str(best_trial_id) / "curves.png"
    if best_trial_id is not None and curves.is_file():
        files.append(Path(shutil.copyfile(curves, folder / "best_trial_curves.png")))
    for path in files:
        recorder.client.log_artifact(recorder.parent_run_id, str(path))
