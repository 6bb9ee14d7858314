"""The frozen-prefix activation cache: cuts compute the same function as the whole model, a top
trained on the cache is the whole model's training, and the cache key follows what decides the
values."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf
from keras_tuner.src.engine.tuner_utils import SaveBestEpoch  # the per-trial checkpoint callback
from PIL import Image

from conftest import fixed_space
from tune.config.schema import (
    AugmentConfig,
    DataConfig,
    HeadConfig,
    SyntheticConfig,
    TrainingConfig,
)
from tune.data import synthetic
from tune.data.pipeline import SplitRows, load_search_data
from tune.errors import ConfigError
from tune.model import activations, cuts, inference
from tune.model.activations import entry_key, fill_activations, fill_order, plan_cache
from tune.model.backbones import build_base, thaw, thawable_layers
from tune.model.base_init import unit_variance_base
from tune.model.classifier import build_classifier, feature_statistics
from tune.model.hypermodel import TransferHyperModel
from tune.model.recipe import OBJECTIVES, compile_for_phase, precision

PLAIN = AugmentConfig(enabled=False)
HEAD = HeadConfig(pooling="flatten", standardize=False, dropout=0.2)


def _classifier(name, size, weights=None, seed=1):
    keras.utils.set_random_seed(seed)
    return build_classifier(name, size, 3, weights, HEAD, head_width=8, seed=seed)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    spec = SyntheticConfig(classes=3, train_per_class=10, test_per_class=3, image_size=32)
    synthetic.generate(folder / "images", spec, "Training", "Test")
    return DataConfig(root=str(folder / "images"), image_size=[32, 32], batch_size=4, validation_fraction=0.3)


def test_cut_points_are_every_vgg16_layer_and_xception_block_boundaries():
    vgg = build_base("vgg16", (32, 32), None)
    assert cuts.cut_points(vgg) == list(range(1, len(vgg.layers)))
    names = lambda base, positions: [base.layers[i].name for i in positions]  # noqa: E731
    xception = build_base("xception", (71, 71), None)
    points = names(xception, cuts.cut_points(xception))
    adds = [p for p in points if p.startswith("add")]
    assert len(adds) == 12  # every residual block's end
    assert not any(p.startswith(("block2_", "block5_", "block13_")) for p in points)  # inside residual blocks
    assert points[-1] == xception.layers[-1].name
    assert names(vgg, [cuts.cut_for(vgg, 0), cuts.cut_for(vgg, 1)]) == ["block5_pool", "block5_conv2"]
    assert cuts.cut_for(vgg, 13) is None  # every convolution trains: nothing below to cache
    assert names(xception, [cuts.cut_for(xception, 1)]) == ["block14_sepconv1_act"]
    # the third-last is block 13's shortcut convolution, inside its residual block: cut at the block's entry
    entry = cuts.cut_for(xception, 3)
    assert xception.layers[entry].name == adds[-2]  # block 12's end, block 13's entry
    assert names(vgg, cuts.reachable_cuts(vgg, [0, 1, 2])) == ["block5_conv1", "block5_conv2", "block5_pool"]
    again = build_base("xception", (71, 71), None)  # Keras numbers its add layers anew; positions stay
    assert (
        cuts.cut_points(again) == cuts.cut_points(xception) and again.layers[entry].name != xception.layers[entry].name
    )


@pytest.mark.parametrize("name,size", [("vgg16", (32, 32)), ("xception", (71, 71))])
def test_top_on_prefix_equals_the_whole_model_at_every_cut(name, size):
    model = _classifier(name, size)
    x = np.random.default_rng(0).uniform(0, 255, (3, *size, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    base = model.get_layer("base_model")
    points = cuts.cut_points(base)
    prefix = cuts.prefix(model, points)
    activations = prefix.predict(x, verbose=0)
    assert len(activations) == len(points)
    for cut, values in zip(points, activations):
        assert values.shape[1:] == cuts.cut_shapes(model, [cut])[cut]
        got = cuts.top(model, cut).predict(values, verbose=0)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=base.layers[cut].name)


def _fill(model, cut_list, data, cache, **kwargs):
    options = dict(precision="float32", storage="float32", augment=PLAIN, views=1, seed=0)
    options.update(kwargs)
    return fill_activations(model, "vgg16", options.pop("weights"), cut_list, data.rows, cache, **options)


@pytest.fixture
def weights_file(tmp_path):
    keras.utils.set_random_seed(3)
    path = tmp_path / "vgg16.weights.h5"
    build_base("vgg16", (32, 32), None).save_weights(path)
    return str(path)


def test_a_top_trained_on_the_cache_is_the_whole_model_trained(shapes, tmp_path, weights_file):
    data = load_search_data(shapes, (32, 32), PLAIN, tmp_path / "images")
    model = _classifier("vgg16", (32, 32), weights_file)
    base = model.get_layer("base_model")
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in base.layers if layer.weights}
    head_before = model.get_layer("head_dense").get_weights()[0].copy()
    cut = cuts.cut_for(base, 1)
    stores = _fill(model, [cut], data, tmp_path / "cache", weights=weights_file)
    store = stores[cut]
    assert store.values.shape == (21 + 9, 2, 2, 512) and not store.reused

    thaw(base, 1)
    top = cuts.top(model, cut)
    compile_for_phase(top, 0.01, 0.9)
    top.fit(store.train_batches(4, 0), epochs=1, verbose=0, shuffle=False)
    after = {name: base.get_layer(name).get_weights() for name in before}
    changed = {n for n in before if any(not np.array_equal(a, b) for a, b in zip(before[n], after[n]))}
    assert changed == {"block5_conv3"}  # the thawed layer trained; the cached prefix did not move
    assert not np.array_equal(head_before, model.get_layer("head_dense").get_weights()[0])

    during = top.predict(store.validation_batches(4), verbose=0)
    whole = model.predict(data.validation, verbose=0)  # raw pixels through the whole model
    np.testing.assert_allclose(whole, during, rtol=1e-4, atol=1e-5)
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(data.validation, verbose=0), during, rtol=1e-4, atol=1e-5)


def test_the_cache_key_follows_size_weights_precision_and_data(shapes, tmp_path, weights_file, caplog):
    data = load_search_data(shapes, (32, 32), PLAIN, tmp_path / "images")
    key = dict(
        base_name="vgg16", weights=weights_file, image_size=(32, 32), cut=18, precision="float32",
        storage="float32", rows=data.rows, augment=PLAIN, views=1, seed=0,
    )  # fmt: skip
    first = entry_key(**key)
    assert entry_key(**key) == first
    assert entry_key(**{**key, "image_size": (48, 48)}) != first
    assert entry_key(**{**key, "precision": "bfloat16"}) != first
    assert entry_key(**{**key, "storage": "float16"}) != first
    assert entry_key(**{**key, "cut": 17}) != first
    assert entry_key(**{**key, "augment": AugmentConfig(), "views": 2}) != first
    other = tmp_path / "other.weights.h5"
    keras.utils.set_random_seed(4)
    build_base("vgg16", (32, 32), None).save_weights(other)
    assert entry_key(**{**key, "weights": str(other)}) != first
    # one training image's contents change: one pixel, same name
    image = sorted((Path(shapes.root) / shapes.train_dir).rglob("*.png"))[0]
    stat = image.stat()
    with Image.open(image) as opened:
        pixels = opened.convert("RGB")
    pixels.putpixel((0, 0), tuple(255 - v for v in pixels.getpixel((0, 0))))
    pixels.save(image)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = load_search_data(shapes, (32, 32), PLAIN, tmp_path / "images")
    assert entry_key(**{**key, "rows": changed.rows}) != first
    with pytest.raises(ConfigError, match="model.weights=null"):
        entry_key(**{**key, "weights": None})

    model = _classifier("vgg16", (32, 32), weights_file)
    with caplog.at_level(logging.INFO, logger="tune.model.activations"):
        filled = _fill(model, [18], changed, tmp_path / "cache", weights=weights_file)[18]
        reused = _fill(model, [18], changed, tmp_path / "cache", weights=weights_file)[18]
    assert not filled.reused and reused.reused and reused.key == filled.key and filled.name == "block5_pool"
    np.testing.assert_array_equal(reused.values, filled.values)
    assert "filled cut(s) block5_pool" in caplog.text and f"reused {filled.key}" in caplog.text
    assert sorted(p.suffix for p in (tmp_path / "cache" / "activations").iterdir()) == [".json", ".lock", ".npy"]


def test_augmented_views_differ_validation_is_never_augmented(shapes, tmp_path, weights_file):
    augment = AugmentConfig(enabled=True, flip="horizontal", rotation=0.1, zoom=0.2, views=2)
    data = load_search_data(shapes, (32, 32), augment, tmp_path / "images")
    model = _classifier("vgg16", (32, 32), weights_file)
    plain = _fill(model, [3], data, tmp_path / "cache", weights=weights_file)[3]  # block1_pool
    store = _fill(model, [3], data, tmp_path / "cache", weights=weights_file, augment=augment, views=2)[3]
    n = 21
    assert store.values.shape[0] == 2 * n + 9 and store.key != plain.key
    assert not np.allclose(store.values[:n], store.values[n : 2 * n])  # two different views
    assert not np.allclose(store.values[:n], plain.values[:n])  # augmented
    np.testing.assert_array_equal(store.values[2 * n :], plain.values[n:])  # validation: never augmented
    batches = store.train_batches(4, 0)
    epochs = [np.concatenate([x.numpy().reshape(len(x), -1) for x, _ in batches]) for _ in range(2)]
    assert epochs[0].shape[0] == n  # one view of each image an epoch ...
    assert not np.array_equal(np.sort(epochs[0], 0), np.sort(epochs[1], 0))  # ... drawn again the next


def test_the_fill_runs_every_view_and_split_as_one_stream_of_rows_of_their_images(
    shapes, tmp_path, weights_file, monkeypatch
):
    augment = AugmentConfig(enabled=True, flip="horizontal", rotation=0.1, zoom=0.2, views=2)
    data = load_search_data(shapes, (32, 32), augment, tmp_path / "images")
    image_rows, view = fill_order(data.rows, 2)
    n_train, n_validation = len(data.rows.train_rows), len(data.rows.validation_rows)
    np.testing.assert_array_equal(image_rows[:n_train], data.rows.train_rows)
    np.testing.assert_array_equal(image_rows[n_train : 2 * n_train], data.rows.train_rows)
    np.testing.assert_array_equal(image_rows[2 * n_train :], data.rows.validation_rows)
    assert view.tolist() == [0] * n_train + [1] * n_train + [-1] * n_validation

    monkeypatch.setattr(inference, "BATCH", 8)  # 21 + 9 rows: 4 batches as one stream, 5 split by split
    monkeypatch.setattr(activations, "BATCH", 8)
    calls = []
    forward = keras.Model.predict_on_batch
    monkeypatch.setattr(keras.Model, "predict_on_batch", lambda self, x: calls.append(len(x)) or forward(self, x))
    model = _classifier("vgg16", (32, 32), weights_file)
    store = _fill(model, [18], data, tmp_path / "cache", weights=weights_file)[18]
    assert calls == [8, 8, 8, 8]  # ceil(30 / 8) batches, the last one padded
    expected = cuts.prefix(model, [18]).predict(data.rows.images[image_rows[-(n_train + n_validation) :]], verbose=0)
    np.testing.assert_allclose(store.values, expected[0] if isinstance(expected, list) else expected, rtol=1e-5)


def test_the_path_is_explicit_and_recorded():
    assert not plan_cache("off", PLAIN).enabled and "training.activation_cache=off" in plan_cache("off", PLAIN).reason
    assert plan_cache("auto", PLAIN).enabled and plan_cache("auto", PLAIN).views == 1
    assert plan_cache("on", AugmentConfig(views=3)).views == 3
    no_views = AugmentConfig(views=0)
    assert not plan_cache("auto", no_views).enabled and "views=0" in plan_cache("auto", no_views).reason
    with pytest.raises(ConfigError, match="training.augment.views"):
        plan_cache("on", no_views)


def test_bfloat16_classifier_keeps_float32_probabilities_and_float32_variables():
    with precision("bfloat16"):
        model = _classifier("vgg16", (32, 32))
    assert keras.config.dtype_policy().name == "float32"  # restored
    out = model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    assert out.dtype == np.float32 and np.allclose(out.sum(axis=1), 1, atol=1e-3)
    assert model.get_layer("head_dense").compute_dtype == "bfloat16"
    assert {w.dtype for w in model.weights} == {"float32"}


def test_a_trial_on_the_cache_trains_exactly_its_thawed_layers_and_reports_what_the_whole_model_predicts(tmp_path):
    # Xception with 3 thawed layers: the cut falls back to block 13's entry, so layers
    # above the cut that stay frozen (block 13's separable convolutions) run on the cache too
    name, size = "xception", (71, 71)
    x, labels, weights, space, base, stores = _one_trial_cached(name, size, 3, 1, tmp_path)
    training = TrainingConfig(head_epochs=1, fine_tune_epochs=1, fine_tune_lr_factor=1.0, verbose=0, augment=PLAIN)
    cut = cuts.cut_for(base, 3)
    assert list(stores) == [cut, len(base.layers) - 1]  # block 13's entry, and the base's output
    stats = feature_statistics(name, size, weights, "avg", x[:8].astype("float32"))
    hypermodel = TransferHyperModel(
        space, 3, size, {name: weights}, {name: {0: stats}}, HeadConfig(), training, OBJECTIVES["val_accuracy"],
        activations={name: stores}, batch_size=4,
    )  # fmt: skip
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    base = model.get_layer("base_model")
    before = {layer.name: layer.get_weights() for layer in base.layers if layer.weights}
    raw = tf.data.Dataset.from_tensor_slices((x.astype("float32"), labels)).batch(4)
    seen = []
    spy = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(spy.model.name))
    history = hypermodel.fit(hp, model, raw.take(2), validation_data=raw.skip(2), callbacks=[spy])
    assert history.epoch == [0, 1] and seen == ["classifier", "classifier"]  # callbacks see the whole model
    after = {name: base.get_layer(name).get_weights() for name in before}
    changed = {n for n in before if any(not np.array_equal(a, b) for a, b in zip(before[n], after[n]))}
    assert changed == {layer.name for layer in thawable_layers(base)[-3:]}  # BatchNorm included: unchanged
    reported = hypermodel.validation_probabilities(model, hp)
    np.testing.assert_allclose(reported, model.predict(raw.skip(2), verbose=0), rtol=1e-4, atol=1e-5)
    assert hypermodel.take_trained_model() is None  # two phases: the checkpoint may be phase 1's


def test_a_one_phase_trial_leaves_the_checkpoint_weights_in_the_trained_model(tmp_path):
    # the objective peaks at the middle epoch, so early stopping must restore it for the
    # trained model to equal keras-tuner's checkpoint (the validation report reads one or the other)
    name, size = "vgg16", (32, 32)
    x, labels, weights, space, _, stores = _one_trial_cached(name, size, 0, 2, tmp_path)
    training = TrainingConfig(head_epochs=3, fine_tune_epochs=0, patience=5, verbose=0, augment=PLAIN)
    objective = kt.Objective("score", "max")
    hypermodel = TransferHyperModel(
        space, 3, size, {name: weights}, {}, HEAD, training, objective, activations={name: stores}, batch_size=4
    )
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    checkpoint = tmp_path / "checkpoint.weights.h5"
    scores, last = [1.0, 3.0, 2.0], {}
    score = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(score=scores[epoch]))
    keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: last.update(weights=model.get_weights()))
    saver = SaveBestEpoch(objective, str(checkpoint))
    raw = tf.data.Dataset.from_tensor_slices((x.astype("float32"), labels)).batch(4)
    history = hypermodel.fit(hp, model, raw.take(2), validation_data=raw.skip(2), callbacks=[score, saver, keep])
    assert history.epoch == [0, 1, 2]
    trained = hypermodel.take_trained_model()
    assert trained is model and hypermodel.take_trained_model() is None  # taken once
    reloaded = hypermodel.build(hp)
    reloaded.load_weights(checkpoint)
    for a, b in zip(trained.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(trained.get_weights(), last["weights"]))  # not the last epoch


def _one_trial_cached(name, size, thawed, seed, tmp_path):
    """12 random images of 3 classes (8 training, 4 validation), a unit-variance base saved for
    them, a space fixing every dimension (`thawed` layers) and the cache filled at its cuts.

    Returns (images uint8, labels int32, weights file, space, the probe's base, cut -> store)."""
    x = np.random.default_rng(seed).integers(0, 256, (12, *size, 3), np.uint8)
    labels = (np.arange(12) % 3).astype(np.int32)
    weights = str(unit_variance_base(name, size, x[:8].astype("float32"), tmp_path))
    rows = SplitRows(x, np.arange(8), np.arange(8, 12), labels[:8], labels[8:], "fingerprint")
    space = fixed_space(name, thawed)
    probe = build_classifier(name, size, 3, weights, HeadConfig(), head_width=1)
    base = probe.get_layer("base_model")
    stores = _fill_for(probe, name, weights, cuts.reachable_cuts(base, [thawed]), rows, tmp_path / "cache")
    return x, labels, weights, space, base, stores


def _fill_for(classifier, name, weights, cut_list, rows, cache):
    return fill_activations(classifier, name, weights, cut_list, rows, cache, "float32", "float32", PLAIN, 1, 0)
