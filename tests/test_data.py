"""Folders to pipelines: the split, the class list, augmentation on training images only."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tune import synthetic
from tune.config import AugmentConfig, DataConfig, SyntheticConfig
from tune.data import load_search_data, load_test_data
from tune.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shapes(tmp_path) -> DataConfig:
    spec = SyntheticConfig(classes=3, train_per_class=10, test_per_class=3, image_size=32)
    synthetic.generate(tmp_path, spec, "Training", "Test")
    return DataConfig(root=str(tmp_path), image_size=[32, 32], batch_size=4, validation_fraction=0.3)


def _images(ds) -> np.ndarray:
    return np.concatenate([x.numpy() for x, _ in ds])


def test_split_is_disjoint_seeded_and_has_every_class(shapes):
    data = load_search_data(shapes, (32, 32), AugmentConfig(enabled=False))
    again = load_search_data(shapes, (32, 32), AugmentConfig(enabled=False))
    assert set(data.train_files).isdisjoint(data.validation_files)
    assert len(data.train_files) + len(data.validation_files) == 30
    assert {Path(f).parent.name for f in data.validation_files} == set(data.class_names)
    assert data.validation_files == again.validation_files
    assert not any("/Test/" in f for f in data.train_files + data.validation_files)


def test_only_training_images_are_augmented(shapes):
    data = load_search_data(shapes, (32, 32), AugmentConfig(enabled=True, rotation=0.2))
    plain = load_search_data(shapes, (32, 32), AugmentConfig(enabled=False))
    np.testing.assert_array_equal(_images(data.validation), _images(plain.validation))
    assert not np.array_equal(np.sort(_images(data.train), axis=None), np.sort(_images(plain.train), axis=None))


def test_test_folder_with_other_classes_is_refused_naming_both(shapes):
    shutil.rmtree(Path(shapes.root) / "Test" / "red circle")
    (Path(shapes.root) / "Test" / "purple star").mkdir()
    with pytest.raises(DataError, match=r"only in training \['red circle'\], only in test \['purple star'\]"):
        load_search_data(shapes, (32, 32), AugmentConfig(enabled=False))


def test_generated_classes_differ_in_colour(tmp_path):
    rng = np.random.default_rng(0)
    red = np.asarray(synthetic.draw("red circle", 32, rng), dtype=float)
    blue = np.asarray(synthetic.draw("blue triangle", 32, rng), dtype=float)
    assert red[..., 0].min() < 240 and red.mean(axis=(0, 1))[0] > red.mean(axis=(0, 1))[2]
    assert blue.mean(axis=(0, 1))[2] > blue.mean(axis=(0, 1))[0]


@pytest.mark.skipif(not (SHARED / "fruits-360-33class-small").is_dir(), reason="shared Fruits-360 data not present")
def test_real_class_names_with_spaces_are_kept_exactly_and_ordered_the_same_for_test():
    cfg = DataConfig(
        root=str(SHARED / "fruits-360-33class-small"), train_dir="Training", test_dir="Testing",
        image_size=[100, 100], batch_size=64,
    )  # fmt: skip
    data = load_search_data(cfg, (100, 100), AugmentConfig(enabled=False))
    assert len(data.class_names) == 33 and "Apple Red 1" in data.class_names
    assert data.class_names == sorted(p.name for p in (SHARED / "fruits-360-33class-small" / "Training").iterdir())
    assert {Path(f).parent.name for f in data.validation_files} == set(data.class_names)
    labels = np.concatenate([y.numpy() for _, y in load_test_data(cfg, (100, 100), data.class_names)])
    assert np.bincount(labels).tolist() == [40] * 33
