"""The optional search dimensions: optimizer, head depth, the block the head reads and phase 1's epochs.

Each builds and trains on a tiny set (the frozen base unchanged, the head changed); left
unset they build today's model; a head on an earlier block trained on cached activations
is the whole model, raw pixels in, saved and reloaded in safe mode; the config refuses what
cannot run."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY, make_settings
from tune.config.checks import check_settings
from tune.config.schema import AugmentConfig, HeadConfig, ParamSpec, SearchSpace, TrainingConfig
from tune.data.pipeline import SplitRows
from tune.errors import ConfigError
from tune.model import cuts
from tune.model.activations import fill_activations
from tune.model.backbones import build_base
from tune.model.base_init import head_statistics, unit_variance_base
from tune.model.classifier import build_classifier, feature_statistics
from tune.model.hypermodel import TransferHyperModel, reachable_cuts
from tune.model.recipe import OBJECTIVES, distribution_strategy
from tune.model.space import declare_space, declared, grid_points, space_points, trial_settings, trial_values
from tune.search.caches import _sample_activations
from tune.search.refit import RefitEpochs, refit

SIZE = (32, 32)
HEAD = HeadConfig(grid=2, standardize=False)  # VGG16's block4_pool is 2x2 at 32x32
PLAIN = AugmentConfig(enabled=False)
RNG = np.random.default_rng(7)
IMAGES = RNG.integers(0, 256, (12, 32, 32, 3)).astype("float32")
LABELS = (np.arange(12) % 3).astype("int32")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """A random VGG16 scaled to unit variance (as for model.weights=null): its gradients reach block 5."""
    return str(unit_variance_base("vgg16", SIZE, IMAGES[:8], tmp_path_factory.mktemp("bases")))


def _space(**dimensions) -> SearchSpace:
    """Today's five dimensions fixed, then `dimensions` as given."""
    fixed = dict(base_model="vgg16", head_width=8, learning_rate=0.01, momentum=0.9, thawed_layers=1)
    return SearchSpace(**{**{k: ParamSpec(value=v) for k, v in fixed.items()}, **dimensions})


def _hypermodel(space, weights=None, statistics=None, activations=None, head=HEAD) -> TransferHyperModel:
    training = TrainingConfig(head_epochs=1, fine_tune_epochs=1, fine_tune_lr_factor=0.1, verbose=0, augment=PLAIN)
    return TransferHyperModel(
        space, 3, SIZE, {"vgg16": weights}, {"vgg16": statistics}, head, training, OBJECTIVES["val_accuracy"],
        activations=activations, batch_size=4,
    )  # fmt: skip


def _weights(model):
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def _changed(before, after):
    return {name for name in before if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name]))}


def test_unset_dimensions_build_todays_model_and_declare_nothing_new():
    keras.utils.set_random_seed(0)
    hp = kt.HyperParameters()
    model = _hypermodel(_space(), head=HeadConfig()).build(hp)
    today = build_classifier("vgg16", SIZE, 3, None, HeadConfig(), head_width=8)
    assert [one.name for one in hp.space] == ["base_model", "head_width", "learning_rate", "momentum", "thawed_layers"]
    layout = lambda m: [(layer.name, tuple(layer.output.shape)) for layer in m.layers]  # noqa: E731
    assert layout(model) == layout(today)
    assert layout(model.get_layer("base_model"))[1:] == layout(today.get_layer("base_model"))[1:]  # input: numbered
    assert isinstance(model.optimizer, keras.optimizers.SGD) and model.optimizer.momentum == 0.9
    values = trial_settings(hp)
    assert (values["feature_block"], values["head_depth"], values["optimizer"]) == (0, 1, "sgd")


@pytest.mark.parametrize(
    "dimension, spec, phases, thawed, absent",
    [
        ("optimizer", ParamSpec(value="adam"), [0, 1], {"block5_conv3"}, set()),
        ("head_depth", ParamSpec(value=0), [0, 1], {"block5_conv3"}, {"head_dense"}),
        ("feature_block", ParamSpec(value=1), [0], set(), {"block5_conv1", "block5_pool"}),  # no phase 2
    ],
)
def test_each_dimension_builds_and_trains_the_head_and_only_the_layers_it_thaws(
    dimension, spec, phases, thawed, absent, weights
):
    keras.utils.set_random_seed(1)
    hypermodel = _hypermodel(_space(**{dimension: spec}), weights)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    base = model.get_layer("base_model")
    present = {layer.name for layer in [*model.layers, *base.layers]}
    assert not absent & present
    before_base, before_top = _weights(base), _weights(model)
    data = tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)).batch(4)
    history = hypermodel.fit(hp, model, data, validation_data=data)
    assert history.epoch == phases
    assert _changed(before_base, _weights(base)) == thawed
    assert "predictions" in _changed(before_top, _weights(model))
    expected = keras.optimizers.Adam if dimension == "optimizer" else keras.optimizers.SGD
    assert isinstance(model.optimizer, expected)  # phase 2 (when it ran) recompiled with the same optimizer
    rate = 0.01 * (0.1 if len(phases) == 2 else 1)
    np.testing.assert_allclose(float(model.optimizer.learning_rate), rate, rtol=1e-6)


def test_under_a_mirrored_strategy_the_trial_is_built_and_trained_in_its_scope(weights):
    keras.utils.set_random_seed(3)
    hypermodel = _hypermodel(_space(), weights)
    hypermodel.strategy = distribution_strategy("mirrored")
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert all(isinstance(w.value, tf.distribute.DistributedValues) for w in model.weights)
    before = _weights(model)
    data = tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)).batch(4)
    history = hypermodel.fit(hp, model, data, validation_data=data)
    assert history.epoch == [0, 1]  # both phases, phase 2 recompiled in the scope
    assert all(isinstance(w.value, tf.distribute.DistributedValues) for w in model.optimizer.variables)
    assert "predictions" in _changed(before, _weights(model))


def test_a_drawn_head_epochs_count_sets_phase_1s_length_and_phase_2_follows_it(weights):
    keras.utils.set_random_seed(1)
    hypermodel = _hypermodel(_space(head_epochs=ParamSpec(values=[2, 3])), weights)  # training.head_epochs is 1
    hp = kt.HyperParameters()
    hp.values["head_epochs"] = 3
    model = hypermodel.build(hp)
    base = model.get_layer("base_model")
    before = _weights(base)
    data = tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)).batch(4)
    history = hypermodel.fit(hp, model, data, validation_data=data)
    assert history.epoch == [0, 1, 2, 3]  # 3 head epochs, then training.fine_tune_epochs=1
    assert _changed(before, _weights(base)) <= {"block5_conv3"}  # phase 2 keeps its best epoch, or none


def test_a_drawn_head_epochs_count_gives_way_to_the_epochs_its_trial_kept_when_refitted(weights):
    keras.utils.set_random_seed(2)
    hypermodel = _hypermodel(_space(head_epochs=ParamSpec(values=[3]), thawed_layers=ParamSpec(value=0)), weights)
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    assert trial_settings(hp)["head_epochs"] == 3
    rows = SplitRows(IMAGES.astype("uint8"), np.arange(8), np.arange(8, 12), LABELS[:8], LABELS[8:], "fingerprint")
    done = refit(hypermodel, kt.engine.trial.Trial(hp, trial_id="00"), RefitEpochs(2, 0), rows, 4, PLAIN, 0)
    assert len(done.history["loss"]) == 2 and done.images == 12
    assert hp.values["head_epochs"] == 3  # the trial's own record is left as it was


def test_a_vgg16_head_on_block_1_reads_block4_pool_averaged_to_the_grid():
    model = build_classifier("vgg16", (64, 64), 3, None, HeadConfig(grid=2), head_width=8, feature_block=1)
    assert model.get_layer("base_model").layers[-1].name == "block4_pool"
    assert tuple(model.get_layer("head_pool").output.shape) == (None, 2 * 2 * 512)
    x = IMAGES[:2].repeat(2, axis=1).repeat(2, axis=2)  # 64x64
    last = len(model.get_layer("base_model").layers) - 1
    block = cuts.prefix(model, [last]).predict(x, verbose=0)
    block = block[0] if isinstance(block, list) else block
    cells = keras.Model(model.inputs, model.get_layer("head_grid").output).predict(x, verbose=0)
    assert block.shape == (2, 4, 4, 512)  # 4x4 -> 2x2: exactly average pooling
    np.testing.assert_allclose(cells, block.reshape(2, 2, 2, 2, 2, 512).mean(axis=(2, 4)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match=r"model.head.grid=3 is above the 2x2 output of search.feature_block=1"):
        build_classifier("vgg16", SIZE, 3, None, HeadConfig(grid=3), head_width=8, feature_block=1)


def test_xception_blocks_end_at_the_residual_sums_and_truncate_to_a_prefix_of_the_base():
    base = build_base("xception", (71, 71), None)
    ends = [cuts.feature_cut(base, "xception", k) for k in range(1, 11)]
    assert all(isinstance(base.layers[i], keras.layers.Add) for i in ends) and ends == sorted(ends, reverse=True)
    assert set(ends) <= set(cuts.cut_points(base))
    short = cuts.truncated(base, "xception", 1)
    assert short.layers == base.layers[: ends[0] + 1] and tuple(short.output.shape) == (None, 3, 3, 1024)
    with pytest.raises(ConfigError, match=r"search.feature_block=11; xception has blocks 0..10"):
        cuts.feature_cut(base, "xception", 11)


def test_conditional_dimensions_are_neither_drawn_nor_counted_where_they_do_not_apply():
    wide = _space(
        optimizer=ParamSpec(values=["sgd", "adam"]),
        momentum=ParamSpec(values=[0.0, 0.9]),
        head_depth=ParamSpec(values=[0, 1]),
        head_width=ParamSpec(values=[8, 16, 32]),
        feature_block=ParamSpec(values=[0, 1]),
        thawed_layers=ParamSpec(min=0, max=1),
    )
    hp = declared(wide)
    # head_depth 0 + 3 widths; feature_block 1 + 2 thawed counts; adam + 2 momenta
    assert space_points(hp) == (1 + 3) * (1 + 2) * (2 + 1)
    points = list(grid_points(hp))
    assert len(points) == space_points(hp) == len({tuple(p.items()) for p in points})
    assert all(("head_width" in p) == (p["head_depth"] == 1) for p in points)
    assert all(("momentum" in p) == (p["optimizer"] == "sgd") for p in points)
    assert all(("thawed_layers" in p) == (p["feature_block"] == 0) for p in points)
    hp = kt.HyperParameters()
    hp.values.update(head_depth=0, optimizer="adam", feature_block=1)
    values = declare_space(hp, wide)
    assert set(trial_values(hp)) == {"base_model", "feature_block", "head_depth", "optimizer", "learning_rate"}
    assert (values["head_width"], values["momentum"], values["thawed_layers"]) == (None, None, 0)


def test_head_statistics_from_the_cache_equal_those_from_the_images_without_running_the_base(tmp_path, weights):
    order = np.array([5, 2, 7, 0, 3, 6, 1, 4])  # training rows in split order, not image order
    rows = SplitRows(IMAGES.astype("uint8"), order, np.arange(8, 12), LABELS[order], LABELS[8:], "fingerprint")
    probe = build_classifier("vgg16", SIZE, 3, weights, HeadConfig(grid=2), head_width=1)
    base = probe.get_layer("base_model")
    search = _space(feature_block=ParamSpec(values=[0, 1]))
    stores = fill_activations(
        probe, "vgg16", weights, reachable_cuts(base, "vgg16", search), rows, tmp_path / "c", "float32", "float32",
        PLAIN, 1, 0,
    )  # fmt: skip
    sample_rows = np.array([1, 2, 5, 6])
    data = SimpleNamespace(rows=rows, sample_rows=sample_rows)
    feature_cuts = {"vgg16": {block: cuts.feature_cut(base, "vgg16", block) for block in (0, 1)}}
    cached = _sample_activations({"vgg16": stores}, feature_cuts, (0, 1), data)
    assert {block: len(values) for block, values in cached["vgg16"].items()} == {0: 4, 1: 4}
    sample = IMAGES[sample_rows]
    for folder in ("images", "cached", "other"):
        (tmp_path / folder).mkdir()
    from_images = head_statistics({"vgg16": weights}, SIZE, "avg", sample, tmp_path / "images", (0, 1), 2)
    missing = str(tmp_path / "no-such.weights.h5")  # running the base would fail on it
    from_cache = head_statistics({"vgg16": missing}, SIZE, "avg", sample, tmp_path / "cached", (0, 1), 2, cached)
    for block in (0, 1):
        for image_side, cache_side in zip(from_images["vgg16"][block], from_cache["vgg16"][block]):
            np.testing.assert_allclose(cache_side, image_side, rtol=1e-4, atol=1e-6)
    other = head_statistics({"vgg16": weights}, SIZE, "avg", IMAGES[[0, 3, 4, 7]], tmp_path / "other", (0,), 2)
    assert not np.allclose(other["vgg16"][0][0], from_cache["vgg16"][0][0])  # other images: other statistics


def test_an_earlier_block_head_trained_on_cached_activations_is_the_whole_model_from_raw_pixels(tmp_path, weights):
    head = HeadConfig(grid=2)
    rows = SplitRows(IMAGES.astype("uint8"), np.arange(8), np.arange(8, 12), LABELS[:8], LABELS[8:], "fingerprint")
    search = _space(feature_block=ParamSpec(values=[0, 1]))
    probe = build_classifier("vgg16", SIZE, 3, weights, head, head_width=1)
    base = probe.get_layer("base_model")
    reachable = reachable_cuts(base, "vgg16", search)
    assert [base.layers[i].name for i in reachable] == ["block4_pool", "block5_conv2", "block5_pool"]
    stores = fill_activations(
        probe, "vgg16", weights, reachable, rows, tmp_path / "cache", "float32", "float32", PLAIN, 1, 0
    )
    statistics = head_statistics({"vgg16": weights}, SIZE, "avg", IMAGES[:8], tmp_path, (0, 1), 2)["vgg16"]
    assert statistics[0][0].shape == (512,) and statistics[1][0].shape == (2 * 2 * 512,)
    np.testing.assert_array_equal(
        statistics[1][0], feature_statistics("vgg16", SIZE, weights, "avg", IMAGES[:8], 1, 2)[0]
    )
    hypermodel = _hypermodel(_space(feature_block=ParamSpec(value=1)), weights, statistics, {"vgg16": stores}, head)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    before = _weights(model)
    hypermodel.fit(hp, model, None, validation_data=None)  # no images: the cache alone serves it
    assert _changed(before, _weights(model)) == {"head_dense", "predictions"}
    store = stores[reachable[0]]
    on_cache = cuts.top(model, store.cut).predict(store.validation_batches(4), verbose=0)
    pixels = IMAGES[8:12].astype("uint8").astype("float32")
    np.testing.assert_allclose(model.predict(pixels, verbose=0), on_cache, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hypermodel.validation_probabilities(model, hp), on_cache, rtol=1e-4, atol=1e-5)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0), on_cache, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "override, message",
    [
        ("search.optimizer.value=rmsprop", r"search.optimizer: 'rmsprop'; expected one of \['sgd', 'adam'\]"),
        ("search.head_depth.values=[0,2]", r"search.head_depth: 2; expected a whole number in 0..1"),
        ("search.feature_block.value=5", r"search.feature_block: 5; expected a whole number in 0..4"),
        ("search.feature_block.value=1", r"search.thawed_layers draws \[1, 2\] but search.feature_block draws only"),
        ("search.head_epochs.values=[0,5]", r"search.head_epochs: 0; expected a whole number at least 1"),
        ("model.head.grid=0", "model.head.grid=0; expected a whole number at least 1"),
    ],
)
def test_bad_values_and_impossible_combinations_are_refused_in_one_line(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as err:
        check_settings(make_settings(tmp_path, [*TINY, override]))
    assert "\n" not in str(err.value)


def test_the_wide_preset_composes_passes_the_checks_and_declares_every_dimension(tmp_path):
    settings = make_settings(tmp_path, [*TINY, "search=wide", "model.weights=null"])
    check_settings(settings)
    names = [one.name for one in declared(settings.search).space]
    assert names == [
        "base_model", "feature_block", "head_depth", "head_width", "optimizer", "learning_rate", "momentum",
        "thawed_layers", "head_epochs",
    ]  # fmt: skip
    assert settings.search.optimizer.values == ["sgd", "adam"] and settings.search.feature_block.values == [0, 1]
