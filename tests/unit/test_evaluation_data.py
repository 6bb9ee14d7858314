"""`tune.promote` scores on the test images the challenger's sweep recorded: its `data.*` params
and its `data/test_files.txt` (hand-made here), the champion on the same files; `data.*` keys
given on the promote command line win. Models of known behaviour, no sweep."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, make_settings
from registered import accuracy, constant_model, register
from tune.config.schema import DataConfig, PromoteConfig
from tune.data import synthetic
from tune.errors import DataError
from tune.tracking.evaluation_data import given_data_keys, recorded_data
from tune.tracking.promotion import promote
from tune.tracking.registry import CHAMPION


@pytest.fixture
def world(tmp_path):
    """Shapes generated under `tmp_path/sweep`, a store there, and a config pointing elsewhere."""
    sweep = make_settings(tmp_path / "sweep", TINY)
    data = sweep.data
    synthetic.generate(Path(data.root), data.synthetic, data.train_dir, data.test_dir)
    names = sorted(p.name for p in (Path(data.root) / data.test_dir).iterdir())
    here = dataclasses.replace(data, root=str(tmp_path / "not-here"))  # what promote's config says
    return SimpleNamespace(sweep=sweep, data=data, here=here, names=names, client=MlflowClient(sweep.tracking.uri))


def _register(world, label: int, params: bool = True, files=None) -> str:
    """A constant model answering `label`, its run recording the sweep's data.* params and `files`."""
    version = register(world.sweep.tracking, constant_model(len(world.names), label), world.names)
    run_id = world.client.get_model_version(world.sweep.tracking.registered_model_name, version).run_id
    if params:
        for key in ("root", "train_dir", "test_dir", "bad_files", "max_image_pixels", "batch_size"):
            world.client.log_param(run_id, f"data.{key}", str(getattr(world.data, key)))
    if files is not None:
        world.client.log_text(run_id, "".join(f"{line}\n" for line in files), "data/test_files.txt")
    return version


def _promote(world, data, given=frozenset()):
    return promote(data, world.sweep.tracking, PromoteConfig(), given)


def _red_files(world) -> list:
    folder = Path(world.data.root) / world.data.test_dir / "red circle"
    return [f"{world.data.test_dir}/red circle/{p.name}" for p in sorted(folder.iterdir())]


def test_both_versions_are_scored_on_exactly_the_files_the_challengers_run_lists(world):
    red, green = world.names.index("red circle"), world.names.index("green square")
    champion = _register(world, green)
    world.client.set_registered_model_alias(world.sweep.tracking.registered_model_name, CHAMPION, champion)
    challenger = _register(world, red, files=_red_files(world))
    world.client.set_registered_model_alias(world.sweep.tracking.registered_model_name, "challenger", challenger)
    decision = _promote(world, world.here)  # the config's data.root does not exist: the recorded one is used
    assert decision.challenger.test_accuracy == 1.0 and decision.champion.test_accuracy == 0.0
    assert decision.promoted and "data/test_files.txt" in decision.test_images
    assert f"{len(_red_files(world))} files" in decision.test_images


def test_an_older_run_without_the_list_is_scored_on_its_recorded_test_folder(world):
    name = world.sweep.tracking.registered_model_name
    version = _register(world, 0)
    world.client.set_registered_model_alias(name, "challenger", version)
    decision = _promote(world, world.here)
    expected = accuracy(constant_model(len(world.names), 0), Path(world.data.root) / world.data.test_dir, world.names)
    assert decision.challenger.test_accuracy == pytest.approx(expected) and 0 < expected < 1
    assert decision.test_images == f"{world.data.root}/{world.data.test_dir}"


def test_a_data_key_on_the_command_line_wins_over_the_recorded_one(world):
    version = _register(world, 0, files=_red_files(world))
    world.client.set_registered_model_alias(world.sweep.tracking.registered_model_name, "challenger", version)
    with pytest.raises(DataError, match=f"'{world.here.root}/Test/red circle/"):
        _promote(world, world.here, given=frozenset({"root"}))


def test_a_listed_file_that_is_gone_is_named(world):
    files = _red_files(world)
    version = _register(world, 0, files=[*files, "Test/red circle/gone.png"])
    world.client.set_registered_model_alias(world.sweep.tracking.registered_model_name, "challenger", version)
    with pytest.raises(DataError, match=r"1 test file\(s\) listed in data/test_files.txt cannot be read: .*gone.png"):
        _promote(world, world.here)


def test_given_keys_are_the_data_keys_set_directly_not_group_choices():
    overrides = ["data.root=/x", "+data.test_dir=T", "data=fruits4", "experiment=quickstart", "promote.margin=0.1"]
    assert given_data_keys(overrides) == {"root", "test_dir"}


def test_recorded_params_replace_the_config_except_given_keys():
    params = {"data.root": "/r", "data.test_dir": "Held", "data.max_image_pixels": "99", "data.name": "x"}
    data = recorded_data(params, DataConfig(root="/mine", test_dir="Test"), frozenset({"test_dir"}))
    assert (data.root, data.test_dir, data.max_image_pixels, data.name) == ("/r", "Test", 99, "images")


def test_a_recorded_root_that_is_gone_gives_way_to_the_commands_own_root_and_says_so(world, tmp_path):
    version = _register(world, 0, files=_red_files(world))
    world.client.set_registered_model_alias(world.sweep.tracking.registered_model_name, "challenger", version)
    moved = Path(world.data.root).rename(tmp_path / "moved")
    decision = _promote(world, dataclasses.replace(world.data, root=str(moved)))
    assert decision.challenger.test_accuracy == 0.0  # red files, a model answering class 0 (blue)
    assert f"recorded data.root '{world.data.root}' is gone" in decision.test_images
    gone = re.escape(f"recorded data.root='{world.data.root}', which does not exist;")
    with pytest.raises(DataError, match=f"{gone} .*data.root="):
        _promote(world, world.here)
