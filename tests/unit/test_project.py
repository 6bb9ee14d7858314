"""Tuner projects: one folder per search definition, its key, its lock."""

from __future__ import annotations

import os

import pytest

from conftest import TINY, make_settings
from tune.errors import ProjectBusyError
from tune.search.prepare import search_definition
from tune.search.project import delete_checkpoints, open_project


def key_of(root, overrides, files="files-a") -> str:
    with open_project(root / "tuner", search_definition(make_settings(root, [*TINY, *overrides]), files)) as project:
        return project.key


def test_the_search_key_changes_with_data_space_and_base_but_not_with_verbosity(tmp_path):
    key = key_of(tmp_path, [])
    assert key_of(tmp_path, []) == key and len(key) == 12
    assert key_of(tmp_path, [], files="files-b") != key
    for override in ("search.momentum.values=[0.5]", "model.name=xception", "training.head_epochs=3", "seed=1"):
        assert key_of(tmp_path, [override]) != key, override
    quiet = ["training.verbose=1", "tuner.overwrite=true", "tuner.options.max_consecutive_failed_trials=9"]
    assert (
        key_of(
            tmp_path,
            [*quiet, "tuner.baseline_margin=0.2", "tuner.keep_checkpoints=all", "tuner.distribution_strategy=mirrored"],
        )
        == key
    )


def test_a_search_that_runs_a_grid_instead_of_its_tuner_has_its_own_key(tmp_path):
    settings = make_settings(tmp_path, TINY)
    configured = search_definition(settings, "files", settings.tuner.name)
    assert configured == search_definition(settings, "files")  # the configured tuner: the key as before
    assert search_definition(settings, "files", "grid") == {**configured, "tuner.plan": "grid"}


def test_a_search_running_elsewhere_is_refused_naming_its_process(tmp_path):
    flat = search_definition(make_settings(tmp_path, TINY), "files")
    with open_project(tmp_path, flat) as holder:
        busy = rf"already running in another process \(pid {os.getpid()}\)"
        with pytest.raises(ProjectBusyError, match=busy), open_project(tmp_path, flat):
            pass
        assert holder.folder.is_dir()
    with open_project(tmp_path, flat) as again:  # released on leaving the block
        assert again.key == holder.key


def test_a_new_project_remembers_its_definition_and_run_and_overwrite_empties_it(tmp_path):
    flat = search_definition(make_settings(tmp_path, TINY), "files")
    with open_project(tmp_path, flat) as project:
        project.set_parent_run("run-1")
        (project.folder / "keras_tuner").mkdir()
    with open_project(tmp_path, flat) as project:
        assert project.parent_run_id == "run-1" and (project.folder / "keras_tuner").is_dir()
    with open_project(tmp_path, flat, fresh=True) as project:
        assert project.parent_run_id is None and not (project.folder / "keras_tuner").exists()


def test_deleting_checkpoints_keeps_each_trials_record(tmp_path):
    trials = [tmp_path / "keras_tuner" / f"trial_{i}" for i in (0, 1)]
    for folder in trials:
        folder.mkdir(parents=True)
        (folder / "checkpoint.weights.h5").write_bytes(b"w" * 1000)
        (folder / "trial.json").write_text("{}")
        (folder / "build_config.json").write_text("{}")
    assert delete_checkpoints(trials[:1]) == 1000
    assert sorted(p.name for p in trials[0].iterdir()) == ["build_config.json", "trial.json"]
    assert (trials[1] / "checkpoint.weights.h5").is_file()  # a folder not named is left alone
