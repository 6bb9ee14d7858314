"""The commands as a user types them: errors, a folder of one's own configs, and the
sweep -> promote -> predict path on the store a real sweep wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, make_settings
from registered import accuracy, colour_model, constant_model, register
from tune.search.sweep import run_sweep
from tune.tracking.registry import CHAMPION

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent  # the console scripts sit beside the interpreter


def command(cwd: Path, *argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def tune_errors(done: subprocess.CompletedProcess) -> list:
    return [line for line in done.stderr.splitlines() if line.startswith("tune: error:")]


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.head.pooling=mean", "model.head.pooling='mean'; expected one of ['avg', 'max', 'flatten']"),
        ("model.head.dropout=1.5", "model.head.dropout=1.5; expected a number in [0, 1)"),
        ("training.head_epochs=-1", "training.head_epochs=-1; expected a whole number at least 1"),
        ("data.validation_fraction=1.5", "data.validation_fraction=1.5; expected a number in (0, 1)"),
    ],
)
def test_a_bad_value_is_one_line_and_exit_2_before_any_scan_or_run(override, message, tmp_path):
    done = command(tmp_path, sys.executable, "-m", "tune", "experiment=quickstart", override)
    assert done.returncode == 2 and tune_errors(done) == [f"tune: error: {message}"], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "scanning" not in done.stderr
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "experiments" / "datasets").exists()


def test_a_folder_of_ones_own_configs_works_with_config_dir(tmp_path):
    mine = tmp_path / "my-conf" / "experiment"
    mine.mkdir(parents=True)
    (mine / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /experiment/quickstart\ntuner:\n  options:\n    max_trials: 7\n"
    )
    done = command(
        tmp_path, str(BIN / "tune"), "--config-dir", str(tmp_path / "my-conf"), "experiment=mine", "--cfg", "job"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "max_trials: 7" in done.stdout and "name: shapes" in done.stdout


def test_a_sweep_in_which_every_trial_failed_exits_non_zero_with_one_line_and_registers_nothing(tmp_path):
    argv = [*TINY, "tuner.options.max_trials=1", "search.learning_rate.value=100000.0"]
    done = command(tmp_path, sys.executable, "-m", "tune", *argv)
    assert done.returncode == 2 and len(tune_errors(done)) == 1, done.stderr[-3000:]
    assert tune_errors(done)[0].startswith("tune: error: no trial completed (1 FAILED); trial 0 failed with:")
    assert "Traceback" not in done.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    sweeps = client.search_runs([client.get_experiment_by_name("shapes").experiment_id], "tags.`tune.role` = 'sweep'")
    assert [s.info.status for s in sweeps] == ["FAILED"] and client.search_model_versions() == []
    (log,) = (tmp_path / "experiments" / "shapes").glob("*/tune.log")  # the call recorded a run: its folder stays
    assert "tune: error: no trial completed (1 FAILED)" in log.read_text()
    promoted = command(tmp_path, sys.executable, "-m", "tune.promote", *TINY)
    assert promoted.returncode == 2 and "no registered model 'shapes-classifier'" in tune_errors(promoted)[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store holding a real tiny sweep's model (the challenger) and two models of known accuracy."""
    root = tmp_path_factory.mktemp("store")
    settings = make_settings(root, TINY)
    result = run_sweep(settings)
    names = result.class_names
    test_dir = Path(settings.data.root) / settings.data.test_dir
    strong, weak = colour_model(names), constant_model(len(names), label=0)
    return SimpleNamespace(
        root=root,
        settings=settings,
        result=result,
        test_dir=test_dir,
        client=MlflowClient(settings.tracking.uri),
        name=settings.tracking.registered_model_name,
        versions={
            "sweep": result.model_version,
            "strong": register(settings.tracking, strong, names),
            "weak": register(settings.tracking, weak, names),
        },
        accuracy={"strong": accuracy(strong, test_dir, names), "weak": accuracy(weak, test_dir, names)},
    )


def arrange(world, challenger, champion):
    for alias, key in (("challenger", challenger), (CHAMPION, champion)):
        if key is None:
            world.client.delete_registered_model_alias(world.name, alias)
        else:
            world.client.set_registered_model_alias(world.name, alias, world.versions[key])


def champion_version(world) -> str:
    return str(world.client.get_model_version_by_alias(world.name, CHAMPION).version)


def test_promote_scores_the_sweeps_model_as_the_sweep_did_then_predict_names_its_classes(world, tmp_path):
    world.client.set_registered_model_alias(world.name, "challenger", world.versions["sweep"])
    done = command(world.root, str(BIN / "tune-promote"), *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    assert champion_version(world) == world.versions["sweep"]
    tags = world.client.get_model_version(world.name, world.versions["sweep"]).tags
    assert float(tags["test_accuracy"]) == pytest.approx(world.result.test_metrics["test_accuracy"], abs=1e-6)
    assert float(tags["test_loss"]) == pytest.approx(world.result.test_metrics["test_loss"], rel=1e-3, abs=1e-4)
    image = sorted((world.test_dir / "red circle").glob("*.png"))[0]
    done = command(tmp_path, str(BIN / "tune-predict"), "--tracking-uri", world.settings.tracking.uri, str(image))
    assert done.returncode == 0, done.stderr[-2000:]
    shown, ranked = done.stdout.strip().splitlines()[-1].split(": ", 1)
    pairs = [item.rsplit(" ", 1) for item in ranked.split(", ")]
    assert shown == str(image) and sorted(name for name, _ in pairs) == world.result.class_names
    assert sum(float(p.rstrip("%")) for _, p in pairs) == pytest.approx(100.0, abs=0.25)
    assert list(tmp_path.iterdir()) == []  # predict writes nothing where it runs


def test_the_registered_model_lists_the_packages_it_loads_with(world):
    import mlflow.pyfunc

    from tune.tracking.registry import model_requirements

    mlflow.set_tracking_uri(world.settings.tracking.uri)
    listed = Path(mlflow.pyfunc.get_model_dependencies(f"models:/{world.name}/{world.versions['sweep']}"))
    packages = [line.strip() for line in listed.read_text().splitlines() if line.strip()]
    assert sorted(packages) == sorted(model_requirements())
    assert {p.split("==")[0] for p in packages} == {"mlflow", "keras", "numpy", "tensorflow"}


def test_promote_prints_both_versions_and_moves_the_alias(world):
    arrange(world, "strong", "weak")
    done = command(world.root, sys.executable, "-m", "tune.promote", *TINY, "promote.margin=0.01")
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout[done.stdout.index("registered model:") :].splitlines()
    assert table[1].startswith("test images: ")  # what both versions were scored on
    assert table[2].split() == ["version", "run", "id", "test_accuracy", "test_loss"]
    for row, key in zip(table[3:5], ("strong", "weak")):
        _, version, _, acc, _ = row.split()
        assert version == f"v{world.versions[key]}" and float(acc) == pytest.approx(world.accuracy[key], abs=1e-4)
    assert table[5].startswith("decision: promoted") and champion_version(world) == world.versions["strong"]


def test_promote_reports_our_errors_in_one_line_with_status_2(world):
    done = command(world.root, sys.executable, "-m", "tune.promote", *TINY, "data.name=nothing")
    assert done.returncode == 2 and len(tune_errors(done)) == 1
    assert "nothing-classifier" in tune_errors(done)[0] and world.name in tune_errors(done)[0]
