"""Figures and text reports: real PNGs, exact counts, CSV that reads back, the best trial first."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tune.reports import figures, tables
from tune.tracking.records import TrialRecord

FRUITS = ["Apple Red 1", "Nut (Pecan)", "Passion Fruit", "Tomato 4, Heart", 'Pepper "Green"']
HISTORY = {
    "accuracy": [0.40, 0.60, 0.70, 0.75, 0.85, 0.90],
    "val_accuracy": [0.45, 0.60, 0.66, 0.70, 0.80, 0.84],
    "loss": [1.30, 0.90, 0.70, 0.60, 0.40, 0.30],
    "val_loss": [1.20, 0.95, 0.80, 0.75, 0.55, 0.50],
}


def trial_rows(count: int = 8, failed=(3,)) -> list:
    """`count` trial records with two bases, spread learning rates, and failed trials `failed`."""
    rng = np.random.default_rng(0)
    rows = []
    for t in range(count):
        values = {
            "base_model": ["vgg16", "xception"][t % 2],
            "head_width": [64, 128, 256][t % 3],
            "learning_rate": float(10 ** rng.uniform(-5, -2)),
            "momentum": float(rng.uniform(0.8, 0.99)),
            "thawed_layers": 2,
        }
        score = None if t in failed else float(rng.uniform(0.5, 0.98))
        status = "FAILED" if t in failed else "COMPLETED"
        reason = "FailedTrialError: loss became nan" if t in failed else ""
        rows.append(TrialRecord(f"{t:02d}", status, values, score, 3, 2, 40.0 + t, reason=reason))
    return rows


def assert_real_png(path: Path, min_width: int = 600) -> None:
    """A PNG of sensible size with real content, not a blank canvas."""
    assert path.exists() and path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min_width <= image.width <= 4000 and 300 <= image.height <= 4000
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 50


def test_learning_curves_writes_a_png(tmp_path):
    path = figures.learning_curves(HISTORY, 4, tmp_path / "a" / "curves.png", "trial 03")
    assert path == tmp_path / "a" / "curves.png"
    assert_real_png(path, min_width=1000)
    only_training = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.7], "lr": [0.1]}
    assert_real_png(figures.learning_curves(only_training, None, tmp_path / "b.png"))


def test_a_continued_trials_curves_start_at_its_first_epoch_with_the_phase_line_between():
    ax = figures.new_figure(4, 3).subplots()
    history = {"accuracy": [0.5, 0.6, 0.7], "val_accuracy": [0.4, 0.5, 0.6]}
    figures.curve_panel(ax, history, "accuracy", 3 + np.arange(1, 4), fine_tune_start=1)
    assert list(ax.lines[0].get_xdata()) == [4, 5, 6]  # epochs 4..6 of the trial it continues
    assert [4.5, 4.5] in [list(line.get_xdata()) for line in ax.lines]  # between epochs 4 and 5


def test_learning_curves_rejects_ragged_history(tmp_path):
    with pytest.raises(ValueError, match="of one non-zero length"):
        figures.learning_curves({"loss": [1.0, 0.5], "val_loss": [1.0]}, None, tmp_path / "c.png")


def test_confusion_matrix_equals_a_brute_force_count():
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
    matrix = tables.confusion_matrix(y_true, y_pred, 7)
    expected = np.zeros((7, 7), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        expected[t, p] += 1
    assert matrix.dtype == np.int64 and matrix.shape == (7, 7)
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.sum() == 500


def test_confusion_matrix_keeps_absent_classes_and_rejects_unknown_labels():
    matrix = tables.confusion_matrix(np.array([0, 0]), np.array([0, 1]), 4)
    assert matrix.shape == (4, 4) and matrix[0].tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError, match=r"y_pred in \[0, 4\)"):
        tables.confusion_matrix(np.array([0, 1]), np.array([0, 4]), 4)


def test_confusion_figure_of_33_fruits(tmp_path):
    names = [f"{FRUITS[i % len(FRUITS)]} {i}" for i in range(33)]
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 33, 2000)
    y_pred = np.where(rng.random(2000) < 0.8, y_true, rng.integers(0, 33, 2000))
    path = figures.confusion_figure(tables.confusion_matrix(y_true, y_pred, 33), names, tmp_path / "cm.png")
    assert_real_png(path, min_width=1500)
    with pytest.raises(ValueError, match=r"\(3, 3\) matrix"):
        figures.confusion_figure(np.eye(4, dtype=int), names[:3], tmp_path / "bad.png")


def test_per_class_report_round_trips_names_and_scores_a_perfect_prediction():
    y = np.array([0, 1, 2, 3, 4, 4, 1])
    records = list(csv.DictReader(io.StringIO(tables.per_class_report(y, y, FRUITS))))
    assert [r["class"] for r in records] == [*FRUITS, "macro avg"]
    assert all(float(r[k]) == 1.0 for r in records for k in ("precision", "recall", "f1"))
    assert [int(r["support"]) for r in records] == [1, 2, 1, 1, 2, 7]


def test_per_class_report_scores_a_never_predicted_class_zero():
    report = tables.per_class_report(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]), ["a", "b"])
    records = {r["class"]: r for r in csv.DictReader(io.StringIO(report))}
    assert float(records["b"]["precision"]) == 0.0 and float(records["b"]["recall"]) == 0.0
    assert float(records["a"]["precision"]) == 0.5 and float(records["macro avg"]["recall"]) == 0.5


def test_trials_table_matches_the_records():
    rows = trial_rows()
    rows[5].values["extra"] = "only here"
    rows[6].continues = "02"
    records = list(csv.DictReader(io.StringIO(tables.trials_table(rows, "val_accuracy"))))
    header = [
        *("trial_id", "status", "base_model", "extra", "head_width", "learning_rate", "momentum", "thawed_layers"),
        *("val_accuracy", "epochs_head", "epochs_fine_tune", "seconds", "continues", "reason"),
    ]
    assert list(records[0]) == header
    for row, record in zip(rows, records, strict=True):
        assert (record["trial_id"], record["status"]) == (row.trial_id, row.status)
        assert record["base_model"] == row.values["base_model"]
        assert int(record["head_width"]) == row.values["head_width"]
        assert float(record["learning_rate"]) == row.values["learning_rate"]
        assert record["extra"] == row.values.get("extra", "")
        assert record["val_accuracy"] == ("" if row.score is None else str(row.score))
    assert records[3]["status"] == "FAILED" and records[3]["val_accuracy"] == ""
    assert records[3]["reason"] == "FailedTrialError: loss became nan" and records[6]["continues"] == "02"


@pytest.mark.parametrize("direction", ["max", "min"])
def test_best_so_far_is_monotone_and_skips_failed_trials(direction):
    scores = [None, 0.5, 0.7, None, 0.6, 0.9, float("nan"), 0.2]
    best = tables.best_so_far(scores, direction)
    assert np.isnan(best[0])
    steps = np.diff(best[1:])
    assert (steps >= 0).all() if direction == "max" else (steps <= 0).all()
    assert best[-1] == (0.9 if direction == "max" else 0.2)


def test_best_so_far_rejects_an_unknown_direction():
    with pytest.raises(ValueError, match="'max' or 'min', got 'up'"):
        tables.best_so_far([0.1], "up")


def test_summary_table_lists_the_best_trial_first():
    rows = trial_rows()
    best = max((r for r in rows if r.score is not None), key=lambda r: r.score)
    worst = min((r for r in rows if r.score is not None), key=lambda r: r.score)
    text = tables.summary_table(rows, "val_accuracy", "max", top=3)
    lines = [line for line in text.splitlines() if line.startswith("│")]
    assert len(lines) == 3
    cells = [cell.strip() for cell in lines[0].split("│")[1:-1]]
    assert cells[:3] == ["1", best.trial_id, f"{best.score:.4f}"]
    assert "1 trial(s) failed" in text and max(len(line) for line in text.splitlines()) <= 120
    assert f"{worst.score:.4f}" in tables.summary_table(rows, "val_loss", "min", top=1)


def test_comparison_figure_writes_a_png(tmp_path):
    assert_real_png(figures.comparison_figure(trial_rows(), "val_accuracy", "max", tmp_path / "cmp.png"))
    few = figures.comparison_figure(trial_rows(2, failed=()), "val_loss", "min", tmp_path / "few.png")
    assert_real_png(few)


def test_log_sampled_dimensions_get_a_log_axis_whatever_their_span():
    rows = trial_rows(6, failed=())
    for row, rate in zip(rows, [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3]):  # a span of 6x: linear by the span rule
        row.values["learning_rate"] = rate
    scales = {}
    for log_scaled in ((), ("learning_rate",)):
        fig, _ = figures.comparison_plot(rows, "val_accuracy", "max", log_scaled)
        scales[log_scaled] = {ax.get_xlabel(): ax.get_xscale() for ax in fig.axes}
    assert scales[()]["learning_rate"] == "linear"
    assert scales[("learning_rate",)]["learning_rate"] == "log"
    assert scales[("learning_rate",)]["momentum"] == "linear"  # a linear dimension stays linear
