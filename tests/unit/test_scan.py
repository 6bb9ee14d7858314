"""The scan before training: what is a class, which files are left out and why, the bad-file
policy, and the decoded-image cache (reused, invalidated, never trusted half written)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tune.data.cache
from tune.config.schema import AugmentConfig, DataConfig
from tune.data.pipeline import load_search_data
from tune.data.scan import list_folder, scan_folder
from tune.errors import DataError

CLASSES = ["Apple Red 1", "Pear (Kaiser)"]  # sorted, with spaces and punctuation
COLOURS = {"Apple Red 1": (255, 0, 0), "Pear (Kaiser)": (0, 255, 0)}
PLAIN = AugmentConfig(enabled=False)


def _image(path: Path, colour, size=(32, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _truncated_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


@pytest.fixture
def world(tmp_path) -> DataConfig:
    """Training: 4 images a class; Test: 2 a class; one solid colour a class."""
    for split, count in (("Training", 4), ("Test", 2)):
        for name in CLASSES:
            for i in range(count):
                _image(tmp_path / "images" / split / name / f"{i}.jpg", COLOURS[name])
    return DataConfig(root=str(tmp_path / "images"), batch_size=4, validation_fraction=0.25)


def _scan(cfg: DataConfig, split="Training", cache=None, **options):
    listing = list_folder(Path(cfg.root) / split, "train" if split == "Training" else "test")
    return scan_folder(listing, (16, 16), cache, **options)


def _reasons(scan) -> dict:
    """Path relative to the scanned folder -> (reason, bad)."""
    return {os.path.relpath(s.path, scan.folder): (s.reason, s.bad) for s in scan.skipped}


def _spy_reads(monkeypatch) -> list:
    """Record every file the cache decodes."""
    calls, read = [], tune.data.cache.read_image
    monkeypatch.setattr(tune.data.cache, "read_image", lambda path, *a: calls.append(Path(path)) or read(path, *a))
    return calls


def test_junk_folders_and_hidden_files_are_listed_but_are_neither_classes_nor_errors(world):
    train = Path(world.root) / "Training"
    apple = train / "Apple Red 1"
    _image(train / "__MACOSX" / "Apple Red 1" / "._0.jpg", (0, 0, 0))
    (train / ".ipynb_checkpoints").mkdir()
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "._0.jpg"):
        (apple / name).write_bytes(b"\0\1")
    (apple / "__MACOSX").mkdir()
    (apple / ".ipynb_checkpoints").mkdir()
    scan = _scan(world, bad_files="error")
    assert scan.classes == CLASSES and len(scan.files) == 8
    hidden, junk = ("hidden or system file", False), ("junk folder, not read", False)
    assert _reasons(scan) == {
        ".ipynb_checkpoints": ("junk folder, not a class", False),
        "__MACOSX": ("junk folder, not a class", False),
        **{f"Apple Red 1/{n}": hidden for n in (".DS_Store", "._0.jpg", "Thumbs.db", "desktop.ini")},
        "Apple Red 1/.ipynb_checkpoints": junk,
        "Apple Red 1/__MACOSX": junk,
    }


def test_bad_files_are_left_out_with_their_reasons_and_good_ones_of_any_case_kept(world):
    pear = Path(world.root) / "Training" / "Pear (Kaiser)"
    (pear / "empty.jpg").touch()
    _truncated_jpeg(pear / "cut.jpg")
    (pear / "notes.jpg").write_text("not an image")
    (pear / "notes.txt").write_text("hello")
    _image(pear / "huge.png", COLOURS["Pear (Kaiser)"], (100, 80))
    _image(pear / "more" / "5.jpg", COLOURS["Pear (Kaiser)"])
    _image(pear / "LOUD.JPEG", COLOURS["Pear (Kaiser)"])
    scan = _scan(world, max_pixels=5000)
    reasons = {name: reason for name, (reason, bad) in _reasons(scan).items() if bad}
    bad = ("empty.jpg", "cut.jpg", "notes.jpg", "notes.txt", "huge.png", "more")
    assert reasons.keys() == {f"Pear (Kaiser)/{name}" for name in bad}
    assert reasons["Pear (Kaiser)/empty.jpg"] == "empty file (0 bytes)"
    assert "truncated" in reasons["Pear (Kaiser)/cut.jpg"]
    assert reasons["Pear (Kaiser)/notes.jpg"] == "not an image PIL can identify"
    assert reasons["Pear (Kaiser)/notes.txt"] == "unsupported file type '.txt'"
    assert reasons["Pear (Kaiser)/huge.png"] == "100x80 pixels is above data.max_image_pixels=5000"
    assert reasons["Pear (Kaiser)/more"].startswith("subfolder, not read")
    assert np.bincount(scan.labels).tolist() == [4, 5] and str(pear / "LOUD.JPEG") in scan.files


def test_error_policy_names_the_first_ten_bad_files_and_counts_them(world):
    apple = Path(world.root) / "Training" / "Apple Red 1"
    for i in range(12):
        (apple / f"bad{i:02d}.png").touch()
    with pytest.raises(DataError, match=r"12 file\(s\) in '.*Training' cannot be used \(data.bad_files=error\)") as err:
        _scan(world, bad_files="error")
    message = str(err.value)
    assert f"{apple / 'bad00.png'}: empty file (0 bytes)" in message and "bad09.png" in message
    assert "bad10.png" not in message and "... and 2 more" in message


@pytest.mark.parametrize("policy", ["skip", "error"])
def test_a_class_folder_without_a_usable_image_is_an_error_naming_it(world, policy):
    pear = Path(world.root) / "Test" / "Pear (Kaiser)"
    for image in pear.iterdir():
        image.unlink()
    (pear / ".DS_Store").write_bytes(b"\0")
    expected = rf"class folder '{re.escape(str(pear))}' has no usable image \(1 file\(s\) skipped\)"
    with pytest.raises(DataError, match=expected):
        _scan(world, "Test", bad_files=policy)


def test_different_class_sets_are_refused_naming_both_before_decoding(world, tmp_path, monkeypatch):
    test = Path(world.root) / "Test"
    (test / "Pear (Kaiser)").rename(test / "Pear Kaiser")
    calls = _spy_reads(monkeypatch)
    with pytest.raises(DataError, match=r"only in training \['Pear \(Kaiser\)'\], only in test \['Pear Kaiser'\]"):
        load_search_data(world, (16, 16), PLAIN, tmp_path / "cache")
    assert calls == []


def _pixels_match_labels(batches) -> int:
    """Check each image is its class's colour; return the number of images."""
    seen = 0
    for x, y in batches:
        for image, label in zip(x.numpy(), y.numpy()):
            assert np.allclose(image.mean((0, 1)), COLOURS[CLASSES[label]], atol=8)
            seen += 1
    return seen


def test_skip_policy_trains_on_the_good_files_only_and_finds_bad_test_files_first(world, tmp_path):
    _truncated_jpeg(Path(world.root) / "Training" / "Apple Red 1" / "cut.jpg")
    (Path(world.root) / "Test" / "Pear (Kaiser)" / "notes.jpg").write_text("not an image")
    data = load_search_data(world, (16, 16), PLAIN, tmp_path / "cache")
    assert data.class_names == CLASSES
    assert data.counts == {"train": 6, "validation": 2, "test": 4}
    assert [(s.split, Path(s.path).relative_to(world.root).as_posix()) for s in data.skipped] == [
        ("train", "Training/Apple Red 1/cut.jpg"),
        ("test", "Test/Pear (Kaiser)/notes.jpg"),
    ]
    assert _pixels_match_labels(data.train) == 6 and _pixels_match_labels(data.validation) == 2
    assert all("/Training/" in f and not f.endswith("cut.jpg") for f in data.train_files + data.validation_files)


def test_error_policy_stops_before_training_naming_a_bad_test_file(world, tmp_path):
    bad = Path(world.root) / "Test" / "Pear (Kaiser)" / "notes.jpg"
    bad.write_text("not an image")
    world.bad_files = "error"
    with pytest.raises(DataError, match=rf"{re.escape(str(bad))}: not an image PIL can identify"):
        load_search_data(world, (16, 16), PLAIN, tmp_path / "cache")


def test_a_second_load_decodes_nothing_and_reports_the_same_skipped_files(world, tmp_path, monkeypatch):
    (Path(world.root) / "Training" / "Apple Red 1" / "notes.jpg").write_text("not an image")
    first = load_search_data(world, (16, 16), PLAIN, tmp_path / "cache")
    calls = _spy_reads(monkeypatch)
    second = load_search_data(world, (16, 16), PLAIN, tmp_path / "cache")
    assert calls == []
    assert second.skipped == first.skipped and len(first.skipped) == 1
    assert second.fingerprint == first.fingerprint and second.validation_files == first.validation_files
    np.testing.assert_array_equal(second.sample, first.sample)


def test_a_changed_file_invalidates_its_folder_entry_only(world, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    before = load_search_data(world, (16, 16), PLAIN, cache)
    changed = _image(Path(world.root) / "Training" / "Apple Red 1" / "0.jpg", (0, 0, 255))
    os.utime(changed, ns=(1_000_000_000, 1_000_000_000))  # a different mtime, whatever the clock
    calls = _spy_reads(monkeypatch)
    after = load_search_data(world, (16, 16), PLAIN, cache)
    assert sorted(calls) == sorted(Path(f) for f in before.train_files + before.validation_files)
    assert after.fingerprint != before.fingerprint
    scan = _scan(world, cache=cache)
    assert np.allclose(scan.images[scan.rows[scan.files.index(str(changed))]].mean((0, 1)), (0, 0, 255), atol=8)


def test_an_incomplete_cache_entry_is_rebuilt_not_trusted(world, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    good = _scan(world, cache=cache)
    (entry,) = cache.glob("*.npy")
    for damage in (lambda: entry.with_suffix(".json").unlink(), lambda: entry.write_bytes(entry.read_bytes()[:500])):
        damage()  # as a run killed between the two files, or a disk filled while writing, would leave
        calls = _spy_reads(monkeypatch)
        again = _scan(world, cache=cache)
        assert len(calls) == 8
        np.testing.assert_array_equal(again.images, good.images)
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".lock", ".npy"]
