"""Text reports of a sweep: confusion counts, per-class scores, the trials, the best trials.

Every function takes plain data (trials as `tune.tracking.records.TrialRecord`) and returns
text or an array; nothing is written to disk.
"""

from __future__ import annotations

import csv
import io
from typing import Any, List, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn import metrics

from tune.tracking.records import TrialRecord

DIRECTIONS = ("max", "min")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Count predictions per (true class, predicted class).

    Args:
        y_true: int `(n,)`, true labels in [0, num_classes).
        y_pred: int `(n,)`, predicted labels in [0, num_classes).
        num_classes: C, at least 1.

    Returns:
        int64 `(C, C)`; entry [i, j] counts samples of class i predicted as j (rows true,
        columns predicted); the entries sum to n.
    """
    y_true, y_pred = check_labels(y_true, y_pred, num_classes)
    counts = metrics.confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))
    return counts.astype(np.int64)


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> str:
    """Precision, recall, F1 and support of each class, as CSV text.

    Args:
        y_true: int `(n,)`, true labels in [0, C); label i is `class_names[i]`.
        y_pred: int `(n,)`, predicted labels in [0, C).
        class_names: the C class names, written exactly (quoted where the CSV needs it).

    Returns:
        CSV with header `class,precision,recall,f1,support`, one row per class in label order,
        then a `macro avg` row (unweighted mean of the scores, total support). Scores are in
        [0, 1] with 4 decimals; a class never predicted (or never present) scores 0.
    """
    y_true, y_pred = check_labels(y_true, y_pred, len(class_names))
    scores = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(class_names)), zero_division=0
    )
    precision, recall, f1, support = scores
    rows = [
        [name, *(f"{s:.4f}" for s in (p, r, f)), int(n)]
        for name, p, r, f, n in zip(class_names, precision, recall, f1, support)
    ]
    rows.append(["macro avg", *(f"{s.mean():.4f}" for s in (precision, recall, f1)), int(support.sum())])
    return write_csv(["class", "precision", "recall", "f1", "support"], rows)


def trials_table(records: List[TrialRecord], objective: str = "val_accuracy") -> str:
    """Every trial as one CSV row, in the order given.

    Args:
        records: the ended trials.
        objective: the name of the score column, e.g. "val_accuracy".

    Returns:
        CSV with columns trial_id, status, each hyperparameter (the union of the records'
        `values` keys, sorted), `objective`, epochs_head, epochs_fine_tune, seconds,
        continues (the trial a Hyperband trial continues), reason (why it failed). A
        missing value (a failed trial's score) is an empty field; hyperparameter and score
        floats are written in full (`str`), so they read back exactly; seconds are rounded
        to 0.1.
    """
    names = hyperparameter_names(records)
    header = ["trial_id", "status", *names, objective, "epochs_head", "epochs_fine_tune", "seconds"]
    body = [
        [
            r.trial_id,
            r.status,
            *(r.values.get(n) for n in names),
            r.score,
            r.epochs_head,
            r.epochs_fine_tune,
            rounded(r.seconds),
            r.continues,
            r.reason,
        ]
        for r in records
    ]
    return write_csv([*header, "continues", "reason"], [["" if v is None else v for v in line] for line in body])


def summary_table(records: List[TrialRecord], objective: str, direction: str, top: int = 5) -> str:
    """The `top` best completed trials as a plain-text table, best first, 120 columns wide.

    Args:
        records: the ended trials.
        objective: the score's name, shown as its column header.
        direction: "max" or "min", which way the score is better.
        top: how many trials to list, at least 1.

    Returns:
        A box-drawn table with columns rank (1 = best), trial, `objective`, each
        hyperparameter, epochs (head + fine-tune) and seconds; its caption counts the
        trials that failed or have no score.
    """
    ranking = ranked(records, direction)
    names = hyperparameter_names(records)
    missing = len(records) - len(ranking)
    table = Table(
        title=f"best {min(top, len(ranking))} of {len(records)} trials by {objective} ({direction})",
        caption=f"{missing} trial(s) failed or have no score" if missing else None,
    )
    for header in ["rank", "trial", objective, *names, "epochs", "seconds"]:
        table.add_column(header, justify="left" if header in names else "right")
    for rank, r in enumerate(ranking[:top], start=1):
        seconds = "" if r.seconds is None else f"{r.seconds:.1f}"
        cells = [str(rank), r.trial_id, f"{r.score:.4f}"]
        table.add_row(
            *cells, *(short(r.values.get(n)) for n in names), f"{r.epochs_head}+{r.epochs_fine_tune}", seconds
        )
    console = Console(file=io.StringIO(), width=120, color_system=None, force_terminal=False)
    console.print(table)
    return console.file.getvalue()


def hyperparameter_names(records: List[TrialRecord]) -> List[str]:
    """The union of the records' hyperparameter names, sorted."""
    return sorted({name for r in records for name in r.values})


def ranked(records: List[TrialRecord], direction: str) -> List[TrialRecord]:
    """The completed trials, best first; ties keep trial order."""
    check_direction(direction)
    scored = [r for r in records if r.completed]
    return sorted(scored, key=lambda r: -r.score if direction == "max" else r.score)


def best_so_far(scores: Sequence[float | None], direction: str) -> np.ndarray:
    """The running best score after each trial.

    Args:
        scores: `(n,)` scores in trial order; None or NaN for a trial without one.
        direction: "max" or "min".

    Returns:
        float64 `(n,)`, monotone in `direction`; NaN before the first trial with a score.
    """
    check_direction(direction)
    values = np.array([np.nan if s is None else s for s in scores], dtype=np.float64)
    accumulate = np.fmax.accumulate if direction == "max" else np.fmin.accumulate  # fmax skips NaN
    return accumulate(values) if values.size else values


def check_labels(y_true, y_pred, num_classes: int) -> tuple:
    """Both label arrays as int64 `(n,)`; ValueError unless they match and lie in [0, C)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(f"expected y_true and y_pred of one shape (n,), got {y_true.shape} and {y_pred.shape}")
    if num_classes < 1:
        raise ValueError(f"expected num_classes >= 1, got {num_classes}")
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"expected {name} in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def check_direction(direction: str) -> None:
    """ValueError unless `direction` is "max" or "min"."""
    if direction not in DIRECTIONS:
        raise ValueError(f"expected direction 'max' or 'min', got {direction!r}")


def short(value: Any) -> str:
    """A hyperparameter value for a table cell: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def rounded(seconds: float | None) -> float | None:
    """Seconds to 0.1 s, None kept."""
    return None if seconds is None else round(float(seconds), 1)


def write_csv(header: List[str], rows: List[List[Any]]) -> str:
    """CSV text with `header` first; fields quoted only where needed, `\\n` line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
