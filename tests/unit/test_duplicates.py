"""Identical images found before any trial: across splits, within a split, across classes; each
policy (report, drop, error); and the split files and duplicates list on the sweep run."""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from tune.config.schema import AugmentConfig, DataConfig
from tune.data.layout import relative_lines
from tune.data.pipeline import load_search_data
from tune.errors import DataError
from tune.reports.data_report import data_summary, log_data_report
from tune.tracking.recorder import SweepRecorder
from tune.tracking.store import open_store

PLAIN = AugmentConfig(enabled=False)
CLASSES = ("apple", "lemon")
NONE = {"duplicates_within_split": 0, "duplicates_across_splits": 0, "duplicates_across_classes": 0}


@pytest.fixture
def world(tmp_path) -> DataConfig:
    """Training: 6 distinct noise images a class; Test: 3 a class."""
    rng = np.random.default_rng(0)
    for split, count in (("Training", 6), ("Test", 3)):
        for name in CLASSES:
            for i in range(count):
                path = tmp_path / "images" / split / name / f"{split[:2]}{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return DataConfig(root=str(tmp_path / "images"), test_dir="Test", batch_size=4)


def _copy(cfg: DataConfig, source: str, target: str) -> None:
    shutil.copy(Path(cfg.root) / source, Path(cfg.root) / target)


def _load(cfg: DataConfig, **changes):
    return load_search_data(replace(cfg, **changes), (16, 16), PLAIN, None)


def _lines(cfg, files) -> list:
    return relative_lines(cfg.root, files)


def test_distinct_images_have_no_duplicates(world):
    data = _load(world)
    assert data.duplicates == NONE and data.duplicate_rows == []


def test_a_byte_copy_of_a_training_image_in_the_test_folder_is_reported_across_splits(world, caplog):
    _copy(world, "Training/apple/Tr0.png", "Test/apple/copy.png")
    with caplog.at_level("WARNING", logger="tune.data"):
        data = _load(world)
    assert data.duplicates == {**NONE, "duplicates_across_splits": 1}
    rows = {(row[1], row[3]) for row in data.duplicate_rows}
    assert ("test", "Test/apple/copy.png") in rows and {row[0] for row in data.duplicate_rows} == {1}
    assert {split for split, path in rows if path == "Training/apple/Tr0.png"} <= {"train", "validation"}
    assert "Test/apple/copy.png" in _lines(world, data.test_files)  # report keeps it
    assert "identical images: 0 within a split, 1 across splits, 0 across classes" in caplog.text
    assert "duplicates: 0 within split, 1 across splits, 0 across classes" in data_summary(
        data.class_names, data.counts, 0, data.baseline_accuracy, data.duplicates
    )


def test_the_same_image_under_two_classes_is_a_label_conflict(world):
    _copy(world, "Test/apple/Te0.png", "Test/lemon/conflict.png")
    data = _load(world)
    assert data.duplicates == {**NONE, "duplicates_within_split": 1, "duplicates_across_classes": 1}
    assert sorted(row[2] for row in data.duplicate_rows) == ["apple", "lemon"]


def test_drop_keeps_the_training_copy_and_the_first_within_a_split_and_no_conflicting_copy(world):
    _copy(world, "Training/apple/Tr0.png", "Test/apple/leak.png")
    _copy(world, "Test/lemon/Te1.png", "Test/lemon/Te1z.png")
    _copy(world, "Test/apple/Te2.png", "Test/lemon/conflict.png")
    data = _load(world, duplicates="drop")
    test = _lines(world, data.test_files)
    assert "Test/apple/leak.png" not in test
    assert "Test/lemon/Te1.png" in test and "Test/lemon/Te1z.png" not in test
    assert "Test/apple/Te2.png" not in test and "Test/lemon/conflict.png" not in test
    kept = _lines(world, data.train_files + data.validation_files)
    assert "Training/apple/Tr0.png" in kept and len(kept) == 12
    assert data.duplicates["duplicates_dropped"] == 4 and data.counts["test"] == 9 - 4
    assert data.duplicates["duplicates_across_classes"] == 1 and len(data.duplicate_rows) == 6


def test_error_stops_naming_the_files_of_each_group(world):
    _copy(world, "Training/lemon/Tr3.png", "Test/lemon/leak.png")
    with pytest.raises(DataError, match=r"1 group\(s\) of identical images .*data.duplicates=error") as err:
        _load(world, duplicates="error")
    assert "Training/lemon/Tr3.png (" in str(err.value) and "Test/lemon/leak.png (test)" in str(err.value)


def test_drop_that_empties_a_class_of_validation_images_stops(world):
    for i in range(1, 6):  # every lemon training image the same picture
        _copy(world, "Training/lemon/Tr0.png", f"Training/lemon/Tr{i}.png")
    with pytest.raises(DataError, match=r"class\(es\) \['lemon'\] have no validation image left"):
        _load(world, duplicates="drop")


def test_the_sweep_run_lists_each_split_and_the_duplicates(world, tmp_path):
    _copy(world, "Training/apple/Tr0.png", "Test/apple/copy.png")
    data = _load(world)
    store = f"sqlite:///{tmp_path}/mlflow.db"
    experiment = open_store(store, "images", str(tmp_path / "artifacts"))
    recorder = SweepRecorder.start(experiment, "sweep", {}, "", [], {})
    log_data_report(recorder, data, world.root)
    client = MlflowClient(store)
    run = client.get_run(recorder.parent_run_id)
    folder = Path(client.download_artifacts(run.info.run_id, "data", str(tmp_path / "got")))
    for split, files in (("train", data.train_files), ("validation", data.validation_files), ("test", data.test_files)):
        lines = (folder / f"{split}_files.txt").read_text().splitlines()
        assert lines == _lines(world, files) and len(lines) == data.counts[split]
    assert (folder / "test_files.txt").read_text().splitlines()[0] == "Test/apple/Te0.png"
    table = list(csv.reader(io.StringIO((folder / "duplicates.csv").read_text())))
    assert table[0] == ["group", "split", "class", "path"] and len(table) == 3
    assert run.data.tags["tune.data.layout"] == "split folders"
    assert run.data.metrics["duplicates_across_splits"] == 1 and run.data.metrics["test_images"] == 7
