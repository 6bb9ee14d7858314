"""Names MLflow constrains (experiment, registered model, alias, param and tag keys) are
checked with MLflow's own validators before anything runs, one line naming key and value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow.utils.validation import _validate_tag_name

from conftest import TINY, make_settings
from tune.config.checks import check_settings
from tune.config.names import TAG_KEYS, check_names
from tune.errors import ConfigError
from tune.search.sweep import run_sweep

SRC = Path(__file__).resolve().parents[2] / "src" / "tune"


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "data.name=vision/fruits",
            r"^tracking.registered_model_name='vision/fruits-classifier' \(from data.name='vision/fruits'\); "
            r"MLflow refuses it: Invalid model name 'vision/fruits-classifier'. Names cannot contain '/' or ':'.$",
        ),
        ("tracking.registered_model_name=a:b", r"^tracking.registered_model_name='a:b'; MLflow refuses it: .*':'"),
        ("tracking.registered_model_name=../up", r"^tracking.registered_model_name='../up'; MLflow refuses it"),
        ("tracking.experiment_name=''", r"^tracking.experiment_name=''; MLflow refuses it: Invalid experiment name"),
        ("tracking.alias='best model'", r"^tracking.alias='best model'; MLflow refuses it: .*alphanumerics"),
        ("tracking.alias=v2", r"^tracking.alias='v2'; MLflow refuses it: Version alias name 'v2' is reserved"),
        ("tracking.alias=Latest", r"^tracking.alias='Latest'; MLflow refuses it: 'latest' alias name"),
    ],
)
def test_a_name_mlflow_refuses_fails_the_checks_naming_key_value_source_and_rule(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as caught:
        check_settings(make_settings(tmp_path, [*TINY, override]))
    assert "\n" not in str(caught.value)


def test_a_name_that_merely_contains_a_slash_elsewhere_is_not_blamed_on_data_name(tmp_path):
    settings = make_settings(tmp_path, [*TINY, "tracking.registered_model_name=team/x"])
    with pytest.raises(ConfigError) as caught:
        check_settings(settings)
    assert "from data.name" not in str(caught.value)


def test_names_mlflow_accepts_pass_including_an_experiment_name_with_a_slash(tmp_path):
    check_settings(make_settings(tmp_path, [*TINY, "tracking.experiment_name=team/shapes", "tracking.alias=best-v2"]))


def test_a_param_key_mlflow_refuses_is_named(tiny_settings):
    with pytest.raises(ConfigError, match=r"^config key 'tuner.options.a\*b' cannot be an MLflow param or tag name"):
        check_names(tiny_settings.tracking, "shapes", ["tuner.options.a*b"])


def test_a_bad_data_name_stops_the_sweep_before_any_store_or_run_exists(tmp_path):
    with pytest.raises(ConfigError, match="from data.name='vision/fruits'"):
        run_sweep(make_settings(tmp_path, [*TINY, "data.name=vision/fruits"]))
    assert not (tmp_path / "mlruns").exists()


def test_every_tag_key_the_code_sets_is_in_the_checked_list_and_valid():
    literals = set()
    for path in SRC.rglob("*.py"):
        literals |= set(re.findall(r'"(tune\.[a-z_]+)"', path.read_text()))
    literals -= {"tune.conf", "tune.data"}  # package names, not tags
    assert literals <= set(TAG_KEYS), literals - set(TAG_KEYS)
    for key in TAG_KEYS:
        _validate_tag_name(key)
