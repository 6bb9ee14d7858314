"""Config composition, the schema's types and defaults, and the value checks that run first."""

from __future__ import annotations

import dataclasses
import urllib.error
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from mlflow.tracking import MlflowClient

from conftest import TINY, compose_config, make_settings
from tune.config import schema
from tune.config.checks import RULES, check_folders, check_settings
from tune.errors import ConfigError, WeightsUnavailableError
from tune.model.classifier import POOLING
from tune.model.recipe import OBJECTIVES
from tune.search.prepare import prepare
from tune.search.sweep import run_sweep
from tune.search.tuners import TUNERS, split_options

CONF = Path(schema.__file__).resolve().parents[1] / "conf"
PRESETS = [f"experiment={p.stem}" for p in sorted((CONF / "experiment").glob("*.yaml"))]
PRESETS += [f"debug={p.stem}" for p in sorted((CONF / "debug").glob("*.yaml"))]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_passes_the_checks(preset, tmp_path):
    settings = make_settings(tmp_path, [preset])
    check_settings(settings)
    assert Path(settings.data.root).is_absolute() and Path(settings.tuner_dir).is_absolute()


@pytest.mark.parametrize("tuner", sorted(p.stem for p in (CONF / "tuner").glob("*.yaml")))
def test_every_tuner_config_names_a_registered_tuner(tuner, tmp_path):
    settings = make_settings(tmp_path, [*TINY, f"tuner={tuner}"])
    check_settings(settings)
    assert settings.tuner.name == tuner and tuner in TUNERS


def test_groups_without_a_yaml_file_take_their_defaults_from_the_schema_alone(tmp_path):
    settings = make_settings(tmp_path, ["data.root=images"])
    assert settings.training == schema.TrainingConfig()
    assert settings.promote == schema.PromoteConfig()
    assert settings.model.head == schema.HeadConfig()
    assert settings.training.verbose == 2  # one line per epoch for a user's own data
    assert settings.tracking.experiment_name == "images" == settings.data.name
    assert settings.tracking.registered_model_name == "images-classifier"


def test_the_debug_preset_shrinks_the_quickstart(tmp_path):
    quick, tiny = make_settings(tmp_path, ["experiment=quickstart"]), make_settings(tmp_path, TINY)
    assert tiny.data.synthetic.classes == 3 < quick.data.synthetic.classes
    assert (tiny.training.head_epochs, tiny.training.fine_tune_epochs) == (1, 1)
    assert tiny.tuner.options["max_trials"] == 2 and tiny.model.weights is None == quick.model.weights
    assert tiny.search.learning_rate == quick.search.learning_rate  # the rest is the quickstart's


def test_relative_paths_and_uris_resolve_against_the_launch_folder(tmp_path):
    settings = make_settings(tmp_path, ["data.root=my/images", "model.weights=w/vgg16.h5"])
    assert settings.data.root == str(tmp_path / "my/images")
    assert settings.model.weights == str(tmp_path / "w/vgg16.h5")
    assert settings.tracking.uri == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    moved = make_settings(tmp_path, ["data.root=x", "tracking.artifact_location=file:./art"])
    assert moved.tracking.artifact_location == (tmp_path / "art").as_uri()


@pytest.mark.parametrize(
    "override, key",
    [
        ("search.lerning_rate.min=0.1", "search.lerning_rate"),  # as a typo in a YAML file would
        ("training.head_epochs=three", "training.head_epochs"),
        ("model.head.standardize=maybe", "model.head.standardize"),
    ],
)
def test_unknown_keys_and_wrong_types_stop_the_composition_naming_the_key(override, key, tmp_path):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(tmp_path, [*TINY, override])
    assert key in str(err.value) + str(err.value.__cause__)


@pytest.mark.parametrize(
    "override, key", [("+search.lerning_rate.min=0.1", "search.lerning_rate"), ("+api_token=x", "api_token")]
)
def test_keys_added_with_a_plus_that_the_schema_lacks_are_refused_not_dropped(override, key, tmp_path):
    with pytest.raises(ConfigError, match=f"config key {key} is not one tune has") as err:
        make_settings(tmp_path, [*TINY, override])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.head.pooling=mean", r"model.head.pooling='mean'; expected one of \['avg', 'max', 'flatten'\]"),
        ("model.head.dropout=1.5", r"model.head.dropout=1.5; expected a number in \[0, 1\)"),
        ("training.head_epochs=-1", "training.head_epochs=-1; expected a whole number at least 1"),
        ("data.validation_fraction=1.5", r"data.validation_fraction=1.5; expected a number in \(0, 1\)"),
        ("data.batch_size=0", "data.batch_size=0; expected a whole number at least 1"),
        ("training.patience=-2", "training.patience=-2; expected a whole number at least 0"),
        ("training.verbose=3", r"training.verbose=3; expected one of \[0, 1, 2\]"),
        ("training.fine_tune_lr_factor=0", r"training.fine_tune_lr_factor=0.0; expected a number in \(0, 1\]"),
        ("training.augment.flip=sideways", "training.augment.flip='sideways'; expected one of"),
        ("training.augment.rotation=2", r"training.augment.rotation=2.0; expected a number in \[0, 0.5\]"),
        ("training.augment.zoom=1", r"training.augment.zoom=1.0; expected a number in \[0, 1\)"),
        ("training.activation_cache=yes", r"training.activation_cache='yes'; expected one of \['auto', 'on', 'off'\]"),
        ("training.activation_cache=true", 'YAML reads a bare on or off as a boolean: quote it \\("on"\\)'),
        ("training.activation_storage=int8", "training.activation_storage='int8'; expected one of"),
        ("training.precision=fp8", r"training.precision='fp8'; expected one of \['float32', 'bfloat16', 'float16'\]"),
        ("training.augment.views=-1", "training.augment.views=-1; expected a whole number at least 0"),
        (
            "training.activation_cache=on training.augment.views=0",
            "training.activation_cache=on but training.augment.views=0",
        ),
        ("data.synthetic.classes=9", "data.synthetic.classes=9; expected a whole number in 2..8"),
        ("seed=-1", "seed=-1; expected a whole number in 0..4294967294"),
        ("+tuner.options.seed=0", "tuner.options.seed=0; expected a whole number at least 1"),
        ("model.name=resnet", r"model.name='resnet'; expected one of \['vgg16', 'xception'\]"),
        ("tuner.name=grid", r"tuner.name='grid'; expected one of \['random', 'bayesian', 'hyperband'\]"),
        ("tuner.objective=val_acc", "tuner.objective='val_acc'; expected one of"),
        ("tuner.baseline_margin=1.5", r"tuner.baseline_margin=1.5; expected a number in \[0, 1\]"),
        ("tuner.keep_checkpoints=some", r"tuner.keep_checkpoints='some'; expected one of \['best', 'all'\]"),
        ("promote.margin=2", r"promote.margin=2.0; expected a number in \[0, 1\]"),
        ("promote.version=0", "promote.version=0; expected a version number >= 1"),
        ("search.thawed_layers.max=14", "search.thawed_layers: 14; expected a whole number in 0..13"),
        ("search.learning_rate.min=0.5", "min=0.5 is above max=0.03"),
        ("search.momentum.values=[0.9,1.0]", r"search.momentum: 1.0; expected a number in \[0, 1\)"),
        ("search.head_width.values=[32,4.5]", "search.head_width: 4.5 is not a whole number"),
        ("search.learning_rate.max=fast", "search.learning_rate: 'fast'; expected a number"),
        ("search.learning_rate.min=0", r"search.learning_rate: 0; expected a number in \(0, inf\)"),
        ("search.thawed_layers.min=5", "search.thawed_layers: min=5 is above max=2"),
        ("search.learning_rate.sampling=cubic", "search.learning_rate.sampling='cubic'; expected one of"),
        ("search.base_model.values=[]", "search.base_model: expected a value or a choice"),
        ("data.image_size=[16,16]", "below vgg16's minimum of 32x32"),
        ("data.image_size=[32]", r"data.image_size=\[32\]; expected \[height, width\]"),
        ("model=xception", r"data.image_size=\[32, 32\] is below xception's minimum of 71x71"),
        ("data.bad_files=ignore", r"data.bad_files='ignore'; expected one of \['skip', 'error'\]"),
        ("data.max_image_pixels=0", "data.max_image_pixels=0; expected a whole number at least 1"),
        ("+tuner.options.overwrite=true", "tuner.options.overwrite is set by tune; use tuner.overwrite"),
        ("tuner.options.max_consecutive_failed_trials=0", "max_consecutive_failed_trials=0; expected a whole number"),
        ("+tuner.options.max_trails=3", "tuner.options.max_trails is not an argument of any tuner; expected one of"),
        ("tracking.uri=file:./runs", "tracking.uri='file://.*/runs': a file store cannot hold MLflow's Model Registry"),
        ("tracking.uri=mlruns", "tracking.uri='.*/mlruns': a file store cannot hold"),
    ],
)
def test_a_bad_value_fails_before_anything_runs_naming_key_value_and_what_is_allowed(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as err:
        check_settings(make_settings(tmp_path, [*TINY, *override.split()]))
    assert "\n" not in str(err.value)


def test_closed_sets_in_the_rules_are_the_tables_the_code_uses():
    for key, table in (("model.head.pooling", POOLING), ("tuner.name", TUNERS), ("tuner.objective", OBJECTIVES)):
        allowed = [value for value in table if RULES[key](value) is None]
        assert allowed == list(table) and RULES[key]("nonsense") is not None


def test_a_value_error_inside_a_trial_is_fatal_to_the_search():
    import keras_tuner as kt

    assert issubclass(ConfigError, kt.errors.FatalError) and issubclass(WeightsUnavailableError, kt.errors.FatalError)


def test_imagenet_weights_offline_stop_the_sweep_before_any_run(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", offline)
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path / "keras"))
    settings = make_settings(tmp_path, [*TINY, "model.weights=imagenet"])
    with pytest.raises(WeightsUnavailableError, match="model.weights=null"):
        run_sweep(settings)
    store = tmp_path / "mlruns" / "mlflow.db"
    assert not store.exists() or MlflowClient(settings.tracking.uri).search_runs([]) == []


def test_each_search_form_can_be_set_from_the_command_line_without_a_plus(tmp_path):
    settings = make_settings(tmp_path, [*TINY, "search.thawed_layers.value=4", "search.learning_rate.values=[0.01]"])
    check_settings(settings)
    assert settings.search.thawed_layers.value == 4 and settings.search.learning_rate.values == [0.01]
    assert dataclasses.asdict(settings.search.momentum) == {
        **dataclasses.asdict(schema.ParamSpec()),
        "values": [0.0, 0.5, 0.9],
    }


def test_generated_data_sets_of_other_seeds_live_in_other_folders(tmp_path):
    roots = {make_settings(tmp_path, [*TINY, f"seed={seed}"]).data.root for seed in (0, 1)}
    assert len(roots) == 2


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.root=nowhere", "data.root='.*/nowhere' is not a folder; expected one holding Training/<class>/"),
        ("data.test_dir=Tset", r"data.test_dir='Tset' is not a folder in '.*'; it holds \['Test', 'Training'\]"),
    ],
)
def test_missing_image_folders_are_named_by_their_key(override, message, tmp_path):
    for split in ("Training", "Test"):
        (tmp_path / "images" / split).mkdir(parents=True)
    data = make_settings(tmp_path, [*TINY, "data.synthetic=null", "data.root=images", override]).data
    with pytest.raises(ConfigError, match=message):
        check_folders(data.root, data.train_dir, data.test_dir)


def test_options_of_another_tuner_are_left_out_and_unknown_ones_refused_earlier():
    kept, dropped = split_options("hyperband", {"max_trials": 4, "max_epochs": 9, "seed": 1})
    assert kept == {"max_epochs": 9, "seed": 1} and dropped == ["max_trials"]
    assert split_options("random", {"max_trials": 4, "num_initial_points": 2})[1] == ["num_initial_points"]


def test_a_training_metric_as_the_objective_runs_but_is_flagged(tmp_path, caplog):
    settings = make_settings(tmp_path, [*TINY, "tuner.objective=accuracy"])
    with caplog.at_level("WARNING", logger="tune"):
        prepare(settings, OBJECTIVES["accuracy"])
    assert "tuner.objective=accuracy is measured on the training images" in caplog.text
