"""Config composition and the checks that run before anything is recorded."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import CONF, TINY, make_settings
from tune.checks import check_settings
from tune.errors import ConfigError, WeightsUnavailableError
from tune.sweep import run_sweep
from tune.tuner import TUNERS

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_passes_the_checks(experiment, tmp_path):
    settings = make_settings(tmp_path, [f"experiment={experiment}", "data.root=images"])
    for split in (settings.data.train_dir, settings.data.test_dir):
        (tmp_path / "images" / split).mkdir(parents=True, exist_ok=True)
    check_settings(settings, TUNERS)
    assert Path(settings.data.root).is_absolute()


@pytest.mark.parametrize("tuner", sorted(p.stem for p in (CONF / "tuner").glob("*.yaml")))
def test_every_tuner_config_names_a_registered_tuner(tuner, tmp_path):
    settings = make_settings(tmp_path, [*TINY, f"tuner={tuner}"])
    check_settings(settings, TUNERS)
    assert settings.tuner.name in TUNERS


def test_relative_paths_resolve_against_the_launch_folder(tmp_path):
    settings = make_settings(tmp_path, ["data.root=my/images", "model.weights=w/vgg16.h5"])
    assert settings.data.root == str(tmp_path / "my/images")
    assert settings.model.weights == str(tmp_path / "w/vgg16.h5")
    assert settings.tracking.uri == f"sqlite:///{tmp_path}/mlruns/mlflow.db"


@pytest.mark.parametrize(
    "override, message",
    [
        ("+search.lerning_rate.min=0.1", "lerning_rate"),  # as a typo in a YAML file would
        ("training.head_epochs=three", "head_epochs"),
        ("model.name=resnet", "unknown base model 'resnet'"),
        ("tuner.name=grid", "tuner.name='grid'"),
        ("tuner.objective=val_acc", "tuner.objective='val_acc'"),
        ("search.thawed_layers.max=14", "search.thawed_layers: 14 is outside the allowed range \\[0, 13\\]"),
        ("search.learning_rate.min=0.5", "min=0.5 is above max=0.03"),
        ("search.momentum.values=[0.9,1.0]", "search.momentum: 1.0 is outside"),
        ("search.head_width.values=[32,4.5]", "search.head_width: 4.5 is not a whole number"),
        ("search.learning_rate.max=fast", "search.learning_rate: .fast. is not a number"),
        ("data.image_size=[16,16]", "below vgg16's minimum of 32x32"),
        ("data.bad_files=ignore", r"data.bad_files='ignore'; expected one of \['skip', 'error'\]"),
        ("data.max_image_pixels=0", "data.max_image_pixels=0; expected at least 1"),
        ("search.learning_rate.min=0", r"search.learning_rate: 0 is outside the allowed range \(0.0, inf\)"),
        ("search.momentum.values=[-0.1]", r"search.momentum: -0.1 is outside the allowed range \[0.0, 1.0\)"),
        ("model=xception", r"data.image_size=\[32, 32\] is below xception's minimum of 71x71"),
        ("search.thawed_layers.min=5", "search.thawed_layers: min=5 is above max=2"),
        ("+tuner.options.overwrite=true", "tuner.options.overwrite is set by tune; use tuner.overwrite"),
        ("tuner.options.max_consecutive_failed_trials=0", "max_consecutive_failed_trials=0; expected a whole number"),
    ],
)
def test_bad_config_fails_at_start_naming_the_key(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        check_settings(make_settings(tmp_path, [*TINY, override]), TUNERS)


def test_imagenet_weights_offline_stop_the_sweep_before_any_run(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", offline)
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path / "keras"))
    settings = make_settings(tmp_path, [*TINY, "model.weights=imagenet"])
    with pytest.raises(WeightsUnavailableError, match="model.weights=null"):
        run_sweep(settings)
    store = tmp_path / "mlruns" / "mlflow.db"
    if store.exists():
        assert MlflowClient(settings.tracking.uri).search_runs([]) == []


def test_command_line_error_is_one_line_naming_the_key(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-m", "tune", "data.root=nowhere", "model.weights=null", "hydra.run.dir=" + str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"tune: error: data.root='{tmp_path}/nowhere' is not a folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_each_search_form_can_be_set_from_the_command_line_without_a_plus(tmp_path):
    settings = make_settings(tmp_path, [*TINY, "search.thawed_layers.value=4", "search.learning_rate.values=[0.01]"])
    check_settings(settings, TUNERS)
    assert settings.search.thawed_layers.value == 4 and settings.search.learning_rate.values == [0.01]


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
    settings = make_settings(tmp_path, [*TINY, "data.synthetic=null", "data.root=images", override])
    with pytest.raises(ConfigError, match=message):
        check_settings(settings, TUNERS)
