"""Folders to pipelines: the split, the class list, batches and epochs, augmentation on
training images only."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tune.config.schema import AugmentConfig, DataConfig, SyntheticConfig
from tune.data import synthetic
from tune.data.pipeline import load_search_data, load_test_images
from tune.errors import DataError

PLAIN = AugmentConfig(enabled=False)


@pytest.fixture
def shapes(tmp_path) -> DataConfig:
    spec = SyntheticConfig(classes=3, train_per_class=10, test_per_class=3, image_size=32)
    synthetic.generate(tmp_path / "images", spec, "Training", "Test")
    return DataConfig(root=str(tmp_path / "images"), image_size=[32, 32], batch_size=4, validation_fraction=0.3)


def _images(ds) -> np.ndarray:
    return np.concatenate([x.numpy() for x, _ in ds])


def _labels(ds) -> np.ndarray:
    return np.concatenate([y.numpy() for _, y in ds])


def test_split_is_disjoint_stratified_seeded_and_has_every_class(shapes, tmp_path):
    data = load_search_data(shapes, (32, 32), PLAIN, tmp_path / "cache")
    again = load_search_data(shapes, (32, 32), PLAIN, None)
    other = load_search_data(replace(shapes, seed=1), (32, 32), PLAIN, tmp_path / "cache")
    assert set(data.train_files).isdisjoint(data.validation_files)
    assert data.counts == {"train": 21, "validation": 9, "test": 9}
    assert Counter(Path(f).parent.name for f in data.validation_files) == {name: 3 for name in data.class_names}
    assert data.validation_files == again.validation_files and data.fingerprint == again.fingerprint
    assert other.validation_files != data.validation_files
    assert not any("/Test/" in f for f in data.train_files + data.validation_files)


def test_batches_are_float32_rgb_with_int32_labels_and_a_known_epoch_length(shapes, tmp_path):
    data = load_search_data(shapes, (32, 32), PLAIN, tmp_path / "cache")
    assert data.train.cardinality() == 6 and data.validation.cardinality() == 3  # ceil(21 / 4), ceil(9 / 4)
    x, y = next(iter(data.train))
    assert x.dtype == "float32" and x.shape == (4, 32, 32, 3) and y.dtype == "int32"
    assert x.numpy().min() >= 0 and x.numpy().max() <= 255 and x.numpy().max() > 200
    assert data.sample.dtype == np.float32 and data.sample.shape == (21, 32, 32, 3)
    epochs = [tuple(_labels(data.train)) for _ in range(3)]
    assert sorted(epochs[0]) == sorted(epochs[1]) and len(set(epochs)) > 1  # the same images, reshuffled
    np.testing.assert_array_equal(_images(data.validation), _images(data.validation))  # fixed order
    assert list(_labels(data.validation)) == sorted(_labels(data.validation))


def test_a_class_with_one_usable_image_cannot_be_split(shapes, tmp_path):
    folder = Path(shapes.root) / "Training" / "green square"
    for image in sorted(folder.iterdir())[1:]:
        image.unlink()
    with pytest.raises(DataError, match=r"green square' has 1 usable image\(s\); expected at least 2"):
        load_search_data(shapes, (32, 32), PLAIN, tmp_path / "cache")


def test_only_training_images_are_augmented(shapes, tmp_path):
    data = load_search_data(shapes, (32, 32), AugmentConfig(enabled=True, rotation=0.2), tmp_path / "cache")
    plain = load_search_data(shapes, (32, 32), PLAIN, tmp_path / "cache")
    np.testing.assert_array_equal(_images(data.validation), _images(plain.validation))
    assert not np.array_equal(np.sort(_images(data.train), axis=None), np.sort(_images(plain.train), axis=None))


def test_test_folder_with_other_classes_is_refused_naming_both(shapes, tmp_path):
    shutil.rmtree(Path(shapes.root) / "Test" / "red circle")
    (Path(shapes.root) / "Test" / "purple star").mkdir()
    with pytest.raises(DataError, match=r"only in training \['red circle'\], only in test \['purple star'\]"):
        load_search_data(shapes, (32, 32), PLAIN, tmp_path / "cache")
    with pytest.raises(DataError, match=r"'.*Test' has classes \['blue triangle', 'green square', 'purple star'\]"):
        load_test_images(shapes, (32, 32), ["blue triangle", "green square", "red circle"], tmp_path / "cache")


def test_generated_classes_differ_in_colour(tmp_path):
    rng = np.random.default_rng(0)
    red = np.asarray(synthetic.draw("red circle", 32, rng), dtype=float)
    blue = np.asarray(synthetic.draw("blue triangle", 32, rng), dtype=float)
    assert red[..., 0].min() < 240 and red.mean(axis=(0, 1))[0] > red.mean(axis=(0, 1))[2]
    assert blue.mean(axis=(0, 1))[2] > blue.mean(axis=(0, 1))[0]
