"""Figures of a sweep, written as PNG files: learning curves, a confusion matrix, the trials.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas, never through
pyplot, so nothing global changes and no display is needed. Each function writes one PNG
(creating its folder) and returns its path. Trials are `tune.tracking.records.TrialRecord`s.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Collection, Dict, List, Optional, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from tune.reports.tables import best_so_far, check_direction, hyperparameter_names, ranked, short
from tune.tracking.records import TrialRecord

DPI = 110  # dots per inch: a 10-inch figure is 1100 pixels wide
CURVE_KEYS = ("accuracy", "val_accuracy", "loss", "val_loss")  # Keras log keys drawn
LOG_SPAN = 10.0  # a positive numeric hyperparameter spanning more than this factor gets a log axis


def learning_curves(
    history: Dict[str, List[float]], fine_tune_start: Optional[int], path: Path, title: str = "", first_epoch: int = 0
) -> Path:
    """Accuracy and loss per epoch, training and validation, in two panels side by side.

    Args:
        history: Keras log key -> one value per epoch, both phases on one axis; keys used:
            accuracy and val_accuracy (fractions in [0, 1]), loss and val_loss (cross-entropy,
            nats). Missing keys are left out; other keys are ignored.
        fine_tune_start: 0-based index of the first fine-tuning epoch in those lists (equal
            to the number of head epochs), or None when the trial never fine-tuned.
        path: where to write the PNG (1100 x 440 pixels).
        title: a title above both panels, e.g. "trial 03 (vgg16)".
        first_epoch: the 0-based epoch of the lists' first entry (a Hyperband trial that
            continues an earlier one starts at its `initial_epoch`).

    Returns:
        `path`. Epochs are labelled from `first_epoch + 1`; the dashed line falls between
        the last head epoch and the first fine-tuning epoch.
    """
    used = {key: history[key] for key in CURVE_KEYS if key in history}  # other keys ignored
    lengths = {len(values) for values in used.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            f"expected {list(CURVE_KEYS)} lists of one non-zero length, got {sorted(used)} of lengths {sorted(lengths)}"
        )
    epochs = first_epoch + np.arange(1, lengths.pop() + 1)  # (E,), 1-based
    fig = new_figure(10, 4)
    for ax, metric in zip(fig.subplots(1, 2), ("accuracy", "loss")):
        curve_panel(ax, history, metric, epochs, fine_tune_start)
    return save(fig, path, title)


def curve_panel(
    ax: Axes, history: Dict[str, List[float]], metric: str, epochs: np.ndarray, fine_tune_start: Optional[int]
) -> None:
    """`metric` and `val_<metric>` against the 1-based `epochs` `(E,)`; the phase line dashed
    before entry `fine_tune_start`."""
    for key, label, style in ((metric, "training", "o-"), (f"val_{metric}", "validation", "s--")):
        if key in history:
            ax.plot(epochs, history[key], style, label=label, markersize=4)
    if fine_tune_start is not None and 0 < fine_tune_start < len(epochs):
        boundary = epochs[fine_tune_start] - 0.5
        ax.axvline(boundary, color="0.4", linestyle="--", linewidth=1.2)
        ax.annotate(
            " fine-tuning",
            (boundary, 1),
            xycoords=("data", "axes fraction"),
            va="top",
            fontsize=9,
            color="0.3",
        )
    ax.set(xlabel="epoch", ylabel=metric, title=metric)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> Path:
    """A heat map of a confusion matrix with the count written in each cell.

    Args:
        matrix: int `(C, C)`, rows true class, columns predicted (see `tables.confusion_matrix`).
        class_names: the C names; label i is `class_names[i]`.
        path: where to write the PNG; its side grows with C (about 0.4 inch a class, 110 dpi).
        title: a title above the map, e.g. "test set, trial 03".

    Returns:
        `path`. Zero cells are left blank so that the confusions stand out.
    """
    matrix = np.asarray(matrix)
    size = len(class_names)
    if matrix.shape != (size, size):
        raise ValueError(f"expected a ({size}, {size}) matrix for {size} class names, got {matrix.shape}")
    side = max(5.0, 0.4 * size + 3.0)  # inches, room for the names
    fig = new_figure(side + 1.0, side)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, shrink=0.6, pad=0.02, label="samples")
    font = 10 if size <= 12 else 8
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            dark = count > 0.5 * matrix.max()
            ax.text(j, i, str(count), ha="center", va="center", fontsize=font, color="white" if dark else "black")
    ticks = np.arange(size)
    ax.set_xticks(ticks, class_names, rotation=60, ha="right", rotation_mode="anchor", fontsize=font + 1)
    ax.set_yticks(ticks, class_names, fontsize=font + 1)
    ax.set(xlabel="predicted class", ylabel="true class")
    return save(fig, path, title)


def comparison_figure(
    records: List[TrialRecord], objective: str, direction: str, path: Path, log_scaled: Collection[str] = ()
) -> Path:
    """The trials compared, written as a PNG (see `comparison_plot`); returns `path`."""
    fig, title = comparison_plot(records, objective, direction, log_scaled)
    return save(fig, path, title)


def comparison_plot(
    records: List[TrialRecord], objective: str, direction: str, log_scaled: Collection[str] = ()
) -> tuple:
    """The trials compared: the objective per trial, and against each hyperparameter.

    Args:
        records: the ended trials, in the order they ended.
        objective: the score's name, e.g. "val_accuracy", used on the y axes.
        direction: "max" or "min", which way the score is better.
        log_scaled: hyperparameters sampled on a log scale (`sampling: log`), drawn on a log
            x axis whatever the span of their values.

    Returns:
        (the `Figure`, its title). The first panel shows each scored trial and the best-so-far
        step line, with a red x at the bottom for each trial without a score. Then one panel
        per hyperparameter that varies (fixed ones are listed in the title): a log x axis for
        `log_scaled` ones and where positive numbers span more than a factor of 10,
        categories for non-numeric values. The best trial is ringed in every panel.
    """
    check_direction(direction)
    rows = records
    names = hyperparameter_names(rows)
    varying = [n for n in names if len({repr(r.values.get(n)) for r in rows}) > 1]
    first = rows[0].values if rows else {}
    fixed = [f"{n}={short(first.get(n))}" for n in names if n not in varying]
    nrows = 2 if len(varying) > 3 else 1
    ncols = math.ceil(len(varying) / nrows)
    fig = new_figure(4.5 + 3.2 * ncols, 3.4 * nrows + 0.8)
    grid = fig.add_gridspec(nrows, ncols + 2 if varying else 2)
    trials_panel(fig.add_subplot(grid[:, :2]), rows, objective, direction)
    best = (ranked(rows, direction) or [None])[0]
    for k, name in enumerate(varying):
        ax = fig.add_subplot(grid[k % nrows, 2 + k // nrows])
        parameter_panel(ax, rows, name, objective, best, log=name in log_scaled)
    failed = len(rows) - len(ranked(rows, direction))
    title = f"{len(rows)} trials, {objective} ({direction})" + (f", {failed} without a score" if failed else "")
    return fig, title + ("\nfixed: " + ", ".join(fixed) if fixed else "")


def trials_panel(ax: Axes, rows: List[TrialRecord], objective: str, direction: str) -> None:
    """Scores in trial order with the best-so-far step line; failed trials as red x marks."""
    scores = [row.score if row.completed else None for row in rows]
    order = np.arange(len(rows))  # (T,) trial positions
    done = [i for i, s in enumerate(scores) if s is not None]
    ax.plot(order[done], [scores[i] for i in done], "o", color="C0", label="trial")
    ax.step(order, best_so_far(scores, direction), where="post", color="C1", label="best so far")
    lost = [i for i, s in enumerate(scores) if s is None]
    if lost:
        ax.plot(
            order[lost],
            [0.02] * len(lost),
            "x",
            color="C3",
            markersize=9,
            mew=2,
            transform=ax.get_xaxis_transform(),
            label="failed",
            clip_on=False,
        )
    ax.set_xticks(order, [row.trial_id for row in rows], rotation=90 if len(rows) > 15 else 0)
    ax.set(xlabel="trial", ylabel=objective, title=f"{objective} per trial")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)


def parameter_panel(
    ax: Axes, rows: List[TrialRecord], name: str, objective: str, best: Optional[TrialRecord], log: bool = False
) -> None:
    """`objective` against hyperparameter `name`, completed trials only; the best one ringed.

    The x axis is logarithmic when `log` (a log-sampled dimension) or when the values are
    positive and span more than a factor of `LOG_SPAN`."""
    scored = [row for row in rows if row.completed and row.values.get(name) is not None]
    values = [row.values[name] for row in scored]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        x = np.asarray(values, dtype=np.float64)
        if x.size and x.min() > 0 and (log or x.max() > LOG_SPAN * x.min()):
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 5e-05, not 0.00005
    else:
        categories = sorted({str(v) for v in values})
        x = np.array([categories.index(str(v)) for v in values], dtype=np.float64)
        ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 3 else 0)
        ax.set_xlim(-0.5, len(categories) - 0.5)
    y = [row.score for row in scored]
    ax.plot(x, y, "o", color="C0", alpha=0.8)
    for i in [i for i, row in enumerate(scored) if row is best]:
        ax.plot(x[i], y[i], "o", markersize=13, markerfacecolor="none", markeredgecolor="C1", mew=2)
    ax.set(xlabel=name, ylabel=objective)
    ax.margins(0.12)  # room for the ring at the edges
    ax.grid(alpha=0.3)


def new_figure(width: float, height: float) -> Figure:
    """A figure of `width` x `height` inches at `DPI`, with the Agg canvas attached."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path, title: str) -> Path:
    """Give `fig` its title and write it to `path` as PNG, creating the folder."""
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
