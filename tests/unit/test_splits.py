"""The three splits: one folder carved into training, validation and test; the test folder kept
apart from the training folder; validation drawn at random, in blocks of neighbouring files, or
in groups of near-duplicates."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tune.data.pipeline
from conftest import make_settings
from tune.config.checks import check_folders, check_settings
from tune.config.schema import AugmentConfig, DataConfig
from tune.data.hashing import difference_hashes, hamming
from tune.data.layout import check_apart, list_split_file, relative_lines
from tune.data.pipeline import load_search_data
from tune.data.scan import scan_folder
from tune.data.split import HoldOut, hold_out
from tune.errors import ConfigError, DataError

PLAIN = AugmentConfig(enabled=False)
CLASSES = ("apple", "lemon")


def _noise(path: Path, rng, size=16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def one_folder(tmp_path) -> DataConfig:
    """`<root>/<class>/r_<i>_100.png`, 10 distinct noise images a class, no split folders."""
    rng = np.random.default_rng(0)
    for name in CLASSES:
        for i in range(10):
            _noise(tmp_path / "images" / name / f"r_{i}_100.png", rng)
    return DataConfig(root=str(tmp_path / "images"), train_dir=".", test_dir=None, batch_size=4)


def _lines(cfg: DataConfig, files) -> set:
    return set(relative_lines(cfg.root, files))


def test_one_folder_carve_is_stratified_seeded_and_disjoint_from_training_and_validation(one_folder, tmp_path):
    data = load_search_data(one_folder, (16, 16), PLAIN, tmp_path / "cache")
    again = load_search_data(one_folder, (16, 16), PLAIN, None)
    other = load_search_data(replace(one_folder, seed=1), (16, 16), PLAIN, None)
    files = (data.test_files, data.train_files, data.validation_files)
    test, train, validation = (_lines(one_folder, f) for f in files)
    assert data.layout == "one folder" and data.counts == {"train": 12, "validation": 4, "test": 4}
    assert Counter(line.split("/")[0] for line in test) == {name: 2 for name in CLASSES}  # 0.2 of 10 a class
    assert test.isdisjoint(train | validation) and train.isdisjoint(validation)
    assert len(test | train | validation) == 20 and all(line.count("/") == 1 for line in test)  # apple/r_3_100.png
    assert data.test_files == again.test_files and data.validation_files == again.validation_files
    assert data.test_files != other.test_files
    assert set(data.test.rows).isdisjoint(set(data.rows.train_rows) | set(data.rows.validation_rows))
    assert np.array_equal(data.test.labels, [CLASSES.index(Path(f).parent.name) for f in data.test_files])


def test_nothing_carved_for_test_reaches_the_sample_of_head_statistics(one_folder):
    data = load_search_data(one_folder, (16, 16), PLAIN, None)
    images = data.test.scan.images
    test_pixels = {images[row].tobytes() for row in data.test.rows}
    assert len(data.sample) == 12 and not {image.astype(np.uint8).tobytes() for image in data.sample} & test_pixels


def test_a_class_of_two_images_cannot_be_carved_three_ways(one_folder):
    for image in sorted((Path(one_folder.root) / "lemon").iterdir())[2:]:
        image.unlink()
    with pytest.raises(DataError, match=r"lemon' has 2 usable image\(s\); expected at least 3, one each for training"):
        load_search_data(one_folder, (16, 16), PLAIN, None)


@pytest.mark.parametrize("train_dir, test_dir", [(".", "."), (".", "Test"), ("Test", "."), ("Test", "Test/apple")])
def test_same_or_nested_folders_are_refused_naming_both_before_any_scan(train_dir, test_dir, tmp_path, monkeypatch):
    (tmp_path / "Test" / "apple").mkdir(parents=True)
    scanned = []
    monkeypatch.setattr(tune.data.pipeline, "list_folder", lambda *args: scanned.append(args))
    cfg = DataConfig(root=str(tmp_path), train_dir=train_dir, test_dir=test_dir)
    pattern = rf"data.train_dir='{train_dir}' \(.*\) and data.test_dir='{test_dir}' \(.*\) are the same folder"
    with pytest.raises(ConfigError, match=pattern):
        check_folders(str(tmp_path), train_dir, test_dir)
    with pytest.raises(ConfigError, match="data.test_dir=null to carve a test split"):
        load_search_data(cfg, (16, 16), PLAIN, None)
    assert scanned == []


def test_a_link_to_the_training_folder_is_the_same_folder(tmp_path):
    (tmp_path / "Training").mkdir()
    os.symlink(tmp_path / "Training", tmp_path / "Test")
    with pytest.raises(ConfigError, match="data.train_dir='Training'.*data.test_dir='Test'"):
        check_apart(str(tmp_path), "Training", "Test")
    check_apart(str(tmp_path), "Training", None)  # one folder: nothing to compare


def test_test_dir_null_composes_through_the_preset_and_the_command_line(tmp_path):
    preset = make_settings(tmp_path, ["data=one_folder", "data.root=images"])
    check_settings(preset)
    assert (preset.data.train_dir, preset.data.test_dir, preset.data.test_fraction) == (".", None, 0.2)
    line = make_settings(tmp_path, ["data.root=images", "data.train_dir=.", "data.test_dir=null"])
    assert line.data == preset.data
    with pytest.raises(ConfigError, match=r"data.test_fraction=1.0; expected a number in \(0, 1\)"):
        check_settings(make_settings(tmp_path, ["data=one_folder", "data.root=images", "data.test_fraction=1.0"]))


def test_a_root_of_class_folders_without_split_folders_points_at_the_preset(tmp_path):
    (tmp_path / "apple").mkdir()
    with pytest.raises(ConfigError, match=r"data.train_dir='Training' .* holds \['apple'\].*use data=one_folder"):
        check_folders(str(tmp_path), "Training", "Test")


def test_blocks_hold_out_one_contiguous_run_of_each_class_in_name_order():
    names = [f"r_{i}_100.jpg" for i in range(20)]  # r_10 sorts after r_9, not after r_1
    labels = np.zeros(20, np.int32)
    runs = set()
    for seed in range(6):
        _, held = hold_out(labels, ["apple"], names, HoldOut("blocks", 0.25, seed), "Training")
        numbers = sorted(int(names[i].split("_")[1]) for i in held)
        assert numbers == list(range(numbers[0], numbers[0] + 5))
        runs.add(numbers[0])
    assert len(runs) > 1  # the start is drawn
    _, random_held = hold_out(labels, ["apple"], names, HoldOut("random", 0.25, 0), "Training")
    assert np.ptp(random_held) > 4  # random is not a run


def _smooth(rng, size=48):
    """A smooth RGB image `(size + 2, size + 2, 3)`: 5x5 noise blown up bilinearly."""
    small = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8))
    return np.asarray(small.resize((size + 2, size + 2), Image.Resampling.BILINEAR))


@pytest.fixture
def families(tmp_path) -> DataConfig:
    """Per class 8 images; 4 of them with a copy shifted by a pixel and one 1 brighter."""
    rng = np.random.default_rng(3)
    for name in CLASSES:
        for i in range(8):
            big = _smooth(rng)
            base = big[1:-1, 1:-1]
            copies = [base] if i >= 4 else [base, big[1:-1, 2:], np.minimum(base.astype(int) + 1, 255)]
            for k, pixels in enumerate(copies):
                path = tmp_path / "images" / "Training" / name / f"{i}_{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.astype(np.uint8)).save(path)
    return DataConfig(root=str(tmp_path / "images"), test_dir=None, validation_split="groups", batch_size=4)


def _family(path: str) -> str:
    return f"{Path(path).parent.name}/{Path(path).name.split('_')[0]}"


def test_groups_keep_shifted_and_brightened_copies_on_one_side(families):
    data = load_search_data(families, (48, 48), PLAIN, None)
    scan = data.test.scan
    hashes, family = difference_hashes(scan.images, scan.rows), np.array([_family(f) for f in scan.files])
    distances, same = hamming(hashes, hashes), family[:, None] == family[None, :]
    assert distances[same].max() <= 6 < distances[~same].min()  # copies are near, other images far
    sides = {}
    for side, files in (("train", data.train_files), ("validation", data.validation_files), ("test", data.test_files)):
        for f in files:
            sides.setdefault(_family(f), set()).add(side)
    assert all(len(s) == 1 for s in sides.values()), sides
    assert data.counts["validation"] >= 2 and data.counts["test"] >= 2
    split_up = []
    for seed in range(4):
        rand = load_search_data(replace(families, validation_split="random", seed=seed), (48, 48), PLAIN, None)
        train = {_family(f) for f in rand.train_files}
        split_up += [f for f in map(_family, rand.validation_files + rand.test_files) if f in train]
    assert split_up  # a random split does separate copies


def test_a_split_file_read_back_gives_the_same_images_and_labels(one_folder):
    data = load_search_data(one_folder, (16, 16), PLAIN, None)
    lines = relative_lines(one_folder.root, data.test_files)
    scan = scan_folder(list_split_file(one_folder.root, lines, data.class_names), (16, 16), None)
    assert scan.files == data.test_files and np.array_equal(scan.labels, data.test.labels)
    np.testing.assert_array_equal(scan.images[scan.rows], data.test.scan.images[data.test.rows])
    with pytest.raises(DataError, match=r"'pear/x.png' of test_files.txt is in folder 'pear'; expected one of"):
        list_split_file(one_folder.root, ["pear/x.png"], data.class_names)
    with pytest.raises(DataError, match=r"apple/gone.png' of test_files.txt cannot be read"):
        list_split_file(one_folder.root, ["apple/gone.png"], data.class_names)
