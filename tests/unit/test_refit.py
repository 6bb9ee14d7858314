"""The refit's inputs: the epochs a trial chose in each phase, and batches over both splits' rows."""

from __future__ import annotations

from collections import Counter

import keras_tuner as kt
import numpy as np
import pytest

from tune.config.schema import AugmentConfig
from tune.data.pipeline import SplitRows
from tune.model.activations import ActivationStore
from tune.search.refit import AllRows, RefitEpochs, all_images, chosen_epochs, trial_epochs
from tune.tracking.records import TrialRecord

OBJECTIVE = kt.Objective("val_accuracy", "max")


@pytest.mark.parametrize(
    "history, head, direction, expected",
    [
        ([0.5, 0.7, 0.6, 0.65, 0.6], 3, "max", RefitEpochs(2, 0)),  # best in phase 1: phase 2 not kept
        ([0.5, 0.7, 0.6, 0.8, 0.9, 0.85], 3, "max", RefitEpochs(2, 2)),  # phase 2 starts from phase 1's best
        ([0.5, 0.6, 0.6, 0.6], 2, "max", RefitEpochs(2, 0)),  # a tie keeps the first best
        ([0.9, 0.4, 0.5, 0.3], 2, "min", RefitEpochs(2, 2)),  # a loss: lower is better
        ([0.5, 0.6], 2, "max", RefitEpochs(2, 0)),  # nothing thawed
        ([0.5, 0.8, 0.7], 0, "max", RefitEpochs(0, 2)),  # a continued trial that ran phase 2 only
    ],
)
def test_chosen_epochs_are_the_epochs_up_to_each_phases_kept_one(history, head, direction, expected):
    assert chosen_epochs(history, head, direction) == expected


def _trial(trial_id, continues=None):
    hp = kt.HyperParameters()
    if continues:
        hp.values["tuner/trial_id"] = continues
    trial = kt.engine.trial.Trial(hp, trial_id=trial_id, status="COMPLETED")
    trial.metrics.register(OBJECTIVE.name, OBJECTIVE.direction)
    return trial


def test_trial_epochs_come_from_the_trials_history_and_record():
    trial = _trial("00")
    trial.metrics.update(OBJECTIVE.name, 0.7, step=3)  # all keras-tuner keeps: the best value, at its step
    records = {"00": TrialRecord("00", "COMPLETED", epochs_head=3, epochs_fine_tune=2)}
    histories = {"00": [0.4, 0.6, 0.5, 0.7, 0.65]}
    assert trial_epochs(trial, {"00": trial}, records, histories, "max") == RefitEpochs(2, 1)


def test_a_continued_hyperband_trial_adds_the_epochs_of_the_trial_it_continues():
    first, second = _trial("00"), _trial("01", continues="00")
    trials = {"00": first, "01": second}
    records = {
        "00": TrialRecord("00", "COMPLETED", epochs_head=3),
        "01": TrialRecord("01", "COMPLETED", epochs_head=1, epochs_fine_tune=2),
    }
    histories = {"00": [0.4, 0.6, 0.5], "01": [0.7, 0.8, 0.75]}  # 01 from epoch 3: 1 head, 2 fine-tune
    assert trial_epochs(second, trials, records, histories, "max") == RefitEpochs(2 + 1, 1)


def test_a_trial_without_a_full_objective_history_keeps_its_recorded_counts():
    trial = _trial("00")
    records = {"00": TrialRecord("00", "COMPLETED", epochs_head=4, epochs_fine_tune=1)}
    assert trial_epochs(trial, {"00": trial}, records, {}, "max") == RefitEpochs(4, 1)
    assert trial_epochs(trial, {"00": trial}, records, {"00": [0.9]}, "max") == RefitEpochs(4, 1)


def _store(n_train, n_validation, views):
    """A store whose row r holds the value r, with training labels 0, 1, ... and validation labels 100 + j."""
    count = views * n_train + n_validation
    values = np.arange(count, dtype=np.float32).reshape(count, 1)
    train_labels = np.arange(n_train, dtype=np.int32)
    validation_labels = 100 + np.arange(n_validation, dtype=np.int32)
    return ActivationStore(0, "cut", "k" * 24, values, views, train_labels, validation_labels, True)


def _epoch(dataset):
    pairs = [(int(v), int(y)) for x, y in dataset for v, y in zip(x.numpy()[:, 0], y.numpy())]
    return pairs


@pytest.mark.parametrize("views", [1, 3])
def test_all_rows_batches_hold_every_training_image_once_as_one_view_and_every_validation_row_once(views):
    n_train, n_validation = 7, 4
    store = AllRows.of(_store(n_train, n_validation, views))
    assert store.key != _store(n_train, n_validation, views).key and store.validation_batches(4) is None
    dataset = store.train_batches(batch_size=3, seed=0)
    seen_views = set()
    for _ in range(4):  # epochs
        pairs = _epoch(dataset)
        assert len(pairs) == n_train + n_validation
        training = [(row, label) for row, label in pairs if label < 100]
        assert sorted(label for _, label in training) == list(range(n_train))  # each image once
        for row, label in training:
            assert row % n_train == label and row < views * n_train  # one of its own views
            seen_views.add(row // n_train)
        validation = sorted((row, label) for row, label in pairs if label >= 100)
        assert validation == [(views * n_train + j, 100 + j) for j in range(n_validation)]
    assert seen_views == set(range(views))  # every view gets drawn


def test_all_rows_batches_are_reshuffled_every_epoch():
    dataset = AllRows.of(_store(20, 10, 1)).train_batches(batch_size=8, seed=0)
    assert _epoch(dataset) != _epoch(dataset)


def test_all_images_yields_both_splits_images_with_their_labels():
    images = np.stack([np.full((8, 8, 3), row, np.uint8) for row in range(10)])  # image r is all r
    rows = SplitRows(images, np.array([1, 3, 5, 7]), np.array([2, 4]), np.array([0, 1, 0, 1]), np.array([1, 0]), "f")
    dataset = all_images(rows, batch_size=4, augment=AugmentConfig(enabled=False), seed=0)
    pairs = [(int(x[0, 0, 0]), int(label)) for xs, ys in dataset for x, label in zip(xs.numpy(), ys.numpy())]
    assert Counter(pairs) == Counter([(1, 0), (3, 1), (5, 0), (7, 1), (2, 1), (4, 0)])


def test_all_images_are_augmented_when_training_images_are():
    images = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    rows = SplitRows(images, np.arange(4), np.arange(4, 6), np.zeros(4, np.int32), np.ones(2, np.int32), "f")
    augment = AugmentConfig(enabled=True, flip="", rotation=0.2, zoom=0.2)
    x = np.concatenate([xs.numpy() for xs, _ in all_images(rows, batch_size=6, augment=augment, seed=0)])
    assert x.shape == (6, 16, 16, 3)
    originals = images.astype(np.float32)
    assert not any(np.allclose(a, b) for a in x for b in originals)  # none passed through unchanged
