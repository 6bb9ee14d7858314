"""The classifier and the two-phase recipe: preprocessing, frozen and thawed weights, BatchNorm."""

from __future__ import annotations

import urllib.error

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from conftest import fixed_space
from tune.config.schema import AugmentConfig, HeadConfig, TrainingConfig
from tune.errors import ConfigError, WeightsUnavailableError
from tune.model.backbones import BASE_MODELS, build_base, count_thawable, thaw, thawable_layers
from tune.model.base_init import unit_variance_base
from tune.model.classifier import build_classifier, feature_statistics, preprocessing
from tune.model.hypermodel import TransferHyperModel
from tune.model.recipe import OBJECTIVES, PhasePlan, plan_phases

RNG = np.random.default_rng(0)


def images(n: int, size: int) -> np.ndarray:
    """float32 (n, size, size, 3) RGB in [0, 255]."""
    return RNG.uniform(0, 255, (n, size, size, 3)).astype("float32")


IMAGENET_BGR_MEANS = np.array([103.939, 116.779, 123.68], dtype="float32")  # Simonyan & Zisserman 2014 (caffe)
PUBLISHED = {
    "vgg16": lambda x: x[..., ::-1] - IMAGENET_BGR_MEANS,  # RGB -> BGR, minus the ImageNet channel means
    "xception": lambda x: x / 127.5 - 1.0,  # [0, 255] -> [-1, 1]
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_the_model_takes_rgb_pixels_and_applies_the_bases_published_preprocessing(name):
    size = BASE_MODELS[name].min_size
    x = images(4, size)
    expected = PUBLISHED[name](x)
    np.testing.assert_allclose(preprocessing(name, (size, size)).predict(x, verbose=0), expected, atol=1e-3)
    model = build_classifier(name, (size, size), 3, None, HeadConfig(), head_width=4)
    inside = model.get_layer("preprocess_input").predict(x, verbose=0)
    np.testing.assert_allclose(inside, expected, atol=1e-3)


def _recipe(name, size, thawed, tmp_path, head_epochs=1, fine_tune_epochs=1, patience=5):
    """A hypermodel with every hyperparameter fixed, on a unit-variance random base."""
    x = images(12, size)
    weights = str(unit_variance_base(name, (size, size), x[:8], tmp_path))
    space = fixed_space(name, thawed)
    training = TrainingConfig(
        head_epochs=head_epochs,
        fine_tune_epochs=fine_tune_epochs,
        patience=patience,
        verbose=0,
        augment=AugmentConfig(enabled=False),
    )
    stats = feature_statistics(name, (size, size), weights, "avg", x)
    objective = OBJECTIVES["val_accuracy"]
    hypermodel = TransferHyperModel(
        space, 3, (size, size), {name: weights}, {name: {0: stats}}, HeadConfig(), training, objective
    )
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(12) % 3)).batch(4)
    return hypermodel, data


def _snapshot(layers):
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in layers}


def _changed(before, after):
    return {name for name in before if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name]))}


def test_phase_one_trains_the_head_and_leaves_every_base_weight_unchanged(tmp_path):
    hypermodel, data = _recipe("vgg16", 32, thawed=0, tmp_path=tmp_path)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    base, head = model.get_layer("base_model"), model.get_layer("head_dense")
    base_before, head_before = _snapshot(base.layers), _snapshot([head])
    history = hypermodel.fit(hp, model, data, validation_data=data)
    assert len(history.epoch) == 1
    assert _changed(base_before, _snapshot(base.layers)) == set()
    assert _changed(head_before, _snapshot([head])) == {"head_dense"}


def test_phase_two_changes_exactly_the_thawed_layers_and_no_batchnorm_statistics(tmp_path):
    hypermodel, data = _recipe("xception", 71, thawed=3, tmp_path=tmp_path)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    base = model.get_layer("base_model")
    before = _snapshot(base.layers)
    history = hypermodel.fit(hp, model, data, validation_data=data)
    assert history.epoch == [0, 1]  # one continuing axis: head epoch 0, fine-tune epoch 1
    expected = {layer.name for layer in thawable_layers(base)[-3:]}
    assert _changed(before, _snapshot(base.layers)) == expected
    batchnorms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batchnorms and not _changed(_snapshot(batchnorms), {k: before[k] for k in _snapshot(batchnorms)})


@pytest.mark.parametrize("name, convolutions", [("vgg16", 13), ("xception", 40)])
def test_the_thawable_layers_are_the_convolutions_of_the_published_architecture(name, convolutions):
    size = BASE_MODELS[name].min_size
    base = build_base(name, (size, size), None)
    assert count_thawable(name) == convolutions  # VGG16: 13 conv layers; Xception: 4 + 36 (Chollet 2017)
    assert all(
        isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D)) for layer in thawable_layers(base)
    )
    assert thaw(base, 2) == thawable_layers(base)[-2:]
    with pytest.raises(ConfigError, match=f"thawed_layers={convolutions + 1}.*{convolutions} weight-bearing"):
        thaw(base, convolutions + 1)


def test_weights_from_a_local_file_equal_the_files_values(tmp_path):
    source = build_base("vgg16", (32, 32), None)
    source.set_weights([RNG.normal(size=w.shape).astype("float32") for w in source.get_weights()])
    path = tmp_path / "vgg16.weights.h5"
    source.save_weights(path)
    model = build_classifier("vgg16", (32, 32), 3, str(path), HeadConfig(), head_width=4)
    for saved, loaded in zip(source.get_weights(), model.get_layer("base_model").get_weights()):
        np.testing.assert_array_equal(saved, loaded)


def test_a_base_built_again_from_one_file_reads_it_once_and_again_when_it_changes(tmp_path, monkeypatch):
    loads = []
    load = keras.Model.load_weights
    counted = lambda self, path, **kw: loads.append(path) or load(self, path, **kw)  # noqa: E731
    monkeypatch.setattr(keras.Model, "load_weights", counted)
    source = build_base("vgg16", (32, 32), None)
    path = tmp_path / "vgg16.weights.h5"
    files = []
    for _ in range(2):
        source.set_weights([RNG.normal(size=w.shape).astype("float32") for w in source.get_weights()])
        files.append(source.get_weights())
        source.save_weights(path)  # a new file in place of the old one
        for _ in range(2):
            for saved, loaded in zip(files[-1], build_base("vgg16", (32, 32), str(path)).get_weights()):
                np.testing.assert_array_equal(saved, loaded)
    assert len(loads) == 2  # one read of each file's contents, none for the second build of each
    assert not np.array_equal(files[0][0], files[1][0])


def test_a_weights_file_of_another_architecture_is_refused_by_name(tmp_path):
    path = tmp_path / "xception.weights.h5"
    build_base("xception", (71, 71), None).save_weights(path)
    with pytest.raises(WeightsUnavailableError, match="could not be loaded into vgg16"):
        build_base("vgg16", (71, 71), str(path))
    with pytest.raises(ConfigError, match="is not a file"):
        build_base("vgg16", (71, 71), str(tmp_path / "missing.weights.h5"))


def test_imagenet_weights_offline_fail_naming_the_ways_out(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", offline)
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path))  # no cached copy
    with pytest.raises(WeightsUnavailableError) as err:
        build_base("vgg16", (32, 32), "imagenet")
    assert "could not be fetched" in str(err.value)
    assert "model.weights=/path/to/" in str(err.value) and "model.weights=null" in str(err.value)


def test_unit_variance_scaling_makes_a_random_xception_usable(tmp_path):
    x = images(8, 71)
    plain = feature_statistics("xception", (71, 71), None, "avg", x)
    scaled = feature_statistics(
        "xception", (71, 71), str(unit_variance_base("xception", (71, 71), x, tmp_path)), "avg", x
    )
    assert plain[1][0] < 1e-6  # frozen random Xception: features of ~1e-5, variance ~1e-10
    assert 1e-3 < scaled[1][0] < 1e3


@pytest.mark.parametrize(
    "thawed, epochs, initial, plan",
    [
        (2, None, 0, PhasePlan(head=(0, 3), fine_tune_epochs=2)),  # own budget: 3 head + 2 fine-tune
        (0, None, 0, PhasePlan(head=(0, 3))),  # nothing thawed: phase 1 only
        (2, 2, 0, PhasePlan(head=(0, 2))),  # Hyperband round of 2: all below H=3
        (2, 6, 0, PhasePlan(head=(0, 3), fine_tune=(3, 6))),
        (2, 6, 2, PhasePlan(head=(2, 3), fine_tune=(3, 6))),  # continued inside phase 1
        (2, 9, 6, PhasePlan(head=None, fine_tune=(6, 9))),  # continued inside phase 2
        (0, 9, 6, PhasePlan(head=(6, 9))),
    ],
)
def test_phase_plan_under_every_budget(thawed, epochs, initial, plan):
    assert plan_phases(thawed, 3, 2, epochs, initial) == plan


def _fit(hypermodel, model, hp, data, **budget):
    """Fit with a callback that notes, at each epoch's start, the epoch and whether the base is thawed."""
    seen = []

    class Note(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append((epoch, model.get_layer("base_model").trainable))

    history = hypermodel.fit(hp, model, data, validation_data=data, callbacks=[Note()], **budget)
    return history, seen


def test_a_continued_hyperband_trial_runs_only_the_epochs_left_in_the_phase_it_was_in(tmp_path):
    hypermodel, data = _recipe("vgg16", 32, thawed=2, tmp_path=tmp_path, head_epochs=2)
    hp = kt.HyperParameters()
    first = hypermodel.build(hp)
    history, seen = _fit(hypermodel, first, hp, data, epochs=3)  # round 1: budget 3 = 2 head + 1 fine-tune
    assert seen == [(0, False), (1, False), (2, True)]
    checkpoint = tmp_path / "round1.weights.h5"
    first.save_weights(checkpoint)
    second = hypermodel.build(hp)
    second.load_weights(checkpoint)  # as keras-tuner's Hyperband does for a continued trial
    base = second.get_layer("base_model")
    before = _snapshot(base.layers)
    history, seen = _fit(hypermodel, second, hp, data, epochs=5, initial_epoch=3)
    assert history.epoch == [3, 4] and seen == [(3, True), (4, True)]  # no head phase again, no epoch twice
    assert _changed(before, _snapshot(base.layers)) == {layer.name for layer in thawable_layers(base)[-2:]}


def test_a_continued_trial_inside_phase_one_finishes_it_then_fine_tunes(tmp_path):
    hypermodel, data = _recipe("vgg16", 32, thawed=1, tmp_path=tmp_path, head_epochs=3)
    hp = kt.HyperParameters()
    history, seen = _fit(hypermodel, hypermodel.build(hp), hp, data, epochs=5, initial_epoch=1)
    assert history.epoch == [1, 2, 3, 4] and seen == [(1, False), (2, False), (3, True), (4, True)]


def test_out_of_memory_inside_fit_fails_the_trial_with_a_hint(tmp_path):
    class Exhausted(keras.callbacks.Callback):  # where TensorFlow raises it: inside a training step
        def on_train_batch_end(self, batch, logs=None):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[64,512,14,14]")

    hypermodel, data = _recipe("vgg16", 32, thawed=0, tmp_path=tmp_path)
    hp = kt.HyperParameters()
    with pytest.raises(kt.errors.FailedTrialError, match="out of memory: OOM when allocating.*data.batch_size"):
        hypermodel.fit(hp, hypermodel.build(hp), data, validation_data=data, callbacks=[Exhausted()])
