"""`tune.promote`: each rule on a real store holding a tiny sweep's model and two models of
known quality (a colour rule, near-perfect on the shapes, and one that always answers one
class), plus the Hydra command line."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, compose_config, make_settings
from registered import accuracy, colour_model, constant_model, register
from tune.errors import ConfigError, DataError
from tune.promote import Evaluation, PromoteConfig, decide, load_promote_config, promote
from tune.errors import RegistryError
from tune.registry import CHAMPION, version_by_alias
from tune.sweep import run_sweep


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One tiny sweep (version 1, the challenger) and two registered models of known accuracy."""
    root = tmp_path_factory.mktemp("promote")
    settings = make_settings(root, TINY)
    result = run_sweep(settings)
    names = result.class_names
    test_dir = Path(settings.data.root) / settings.data.test_dir
    strong, weak = colour_model(names), constant_model(len(names), label=0)
    return SimpleNamespace(
        root=root, settings=settings, result=result, client=MlflowClient(settings.tracking.uri),
        name=settings.tracking.registered_model_name,
        versions={"sweep": result.model_version, "strong": register(settings.tracking, strong, names),
                  "weak": register(settings.tracking, weak, names)},
        accuracy={"strong": accuracy(strong, test_dir, names), "weak": accuracy(weak, test_dir, names)},
    )  # fmt: skip


def arrange(world, challenger, champion):
    """Point @challenger and @champion at the named versions (None: no such alias)."""
    client, name = world.client, world.name
    for alias, key in (("challenger", challenger), (CHAMPION, champion)):
        if key is not None:
            client.set_registered_model_alias(name, alias, world.versions[key])
        elif version_by_alias(client, name, alias) is not None:
            client.delete_registered_model_alias(name, alias)


def run(world, **options):
    return promote(world.settings.data, world.settings.tracking, PromoteConfig(**options))


def champion_version(world):
    return str(world.client.get_model_version_by_alias(world.name, CHAMPION).version)


def tags(world, key):
    return world.client.get_model_version(world.name, world.versions[key]).tags


def test_without_a_champion_the_challenger_is_promoted_and_scored_as_the_sweep_scored_it(world):
    arrange(world, "sweep", None)
    decision = run(world)
    assert decision.promoted and decision.champion is None
    assert champion_version(world) == world.versions["sweep"] == decision.challenger.version
    swept = world.result.test_metrics
    assert decision.challenger.test_accuracy == pytest.approx(swept["test_accuracy"])
    assert decision.challenger.test_loss == pytest.approx(swept["test_loss"], rel=1e-3, abs=1e-4)
    assert decision.challenger.run_id == world.result.parent_run_id
    recorded = tags(world, "sweep")
    assert float(recorded["test_accuracy"]) == pytest.approx(decision.challenger.test_accuracy, abs=1e-6)
    assert recorded["promotion"] == decision.reason and decision.reason.startswith("promoted")


def test_a_better_challenger_takes_the_champion_alias(world):
    assert world.accuracy["strong"] > world.accuracy["weak"]  # the models are what they claim
    arrange(world, "strong", "weak")
    decision = run(world)
    assert decision.challenger.test_accuracy == pytest.approx(world.accuracy["strong"])
    assert decision.champion.test_accuracy == pytest.approx(world.accuracy["weak"])
    assert decision.promoted and champion_version(world) == world.versions["strong"]
    assert tags(world, "strong")["promotion"].startswith(f"promoted over champion v{world.versions['weak']}")
    for key in ("strong", "weak"):
        assert float(tags(world, key)["test_accuracy"]) == pytest.approx(world.accuracy[key], abs=1e-6)
        assert float(tags(world, key)["test_loss"]) >= 0


@pytest.mark.parametrize("challenger, champion", [("strong", "weak"), ("weak", "strong")])
def test_a_challenger_not_better_by_the_margin_leaves_the_champion(world, challenger, champion):
    gain = world.accuracy[challenger] - world.accuracy[champion]
    margin = max(gain + 0.01, 0.0)  # better than the champion, or not, but never by enough
    arrange(world, challenger, champion)
    decision = run(world, margin=margin)
    assert not decision.promoted
    assert champion_version(world) == world.versions[champion]
    assert tags(world, challenger)["promotion"] == decision.reason
    assert decision.reason.startswith(f"kept champion v{world.versions[champion]}")


def test_force_moves_the_champion_to_a_worse_challenger(world):
    arrange(world, "weak", "strong")
    decision = run(world, force=True)
    assert decision.challenger.test_accuracy < decision.champion.test_accuracy
    assert decision.promoted and champion_version(world) == world.versions["weak"]
    assert tags(world, "weak")["promotion"].startswith("forced")


def test_promote_version_is_evaluated_instead_of_the_challenger(world):
    arrange(world, "weak", None)
    decision = run(world, version=int(world.versions["strong"]))
    assert decision.challenger.version == world.versions["strong"]
    assert champion_version(world) == world.versions["strong"]


def test_no_challenger_is_an_error_naming_the_model_and_how_to_make_one(world):
    arrange(world, "sweep", "strong")
    world.client.delete_registered_model_alias(world.name, "challenger")
    with pytest.raises(RegistryError, match=rf"'{world.name}' has no version with alias @challenger") as err:
        run(world)
    assert "python -m tune" in str(err.value) and "\n" not in str(err.value)
    assert champion_version(world) == world.versions["strong"]


def test_a_missing_registered_model_or_store_is_an_error_and_creates_nothing(world, tmp_path):
    missing = dataclasses.replace(world.settings.tracking, registered_model_name="nothing-classifier")
    with pytest.raises(RegistryError, match="nothing-classifier") as err:
        promote(world.settings.data, missing, PromoteConfig())
    assert world.name in str(err.value)  # the names the store does have
    nowhere = dataclasses.replace(world.settings.tracking, uri=f"sqlite:///{tmp_path}/none/mlflow.db")
    with pytest.raises(RegistryError, match=f"no MLflow store at '{tmp_path}/none/mlflow.db'"):
        promote(world.settings.data, nowhere, PromoteConfig())
    assert not (tmp_path / "none").exists()


def test_an_unreachable_tracking_server_is_named_within_seconds(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(tmp_path, [*TINY, f"tracking.uri=http://127.0.0.1:{port}"])
    start = time.monotonic()
    with pytest.raises(RegistryError, match=f"cannot read the MLflow store at http://127.0.0.1:{port}"):
        promote(settings.data, settings.tracking, PromoteConfig())
    assert time.monotonic() - start < 30  # not MLflow's minutes of retries


def test_test_classes_unlike_the_models_are_an_error_naming_both(world):
    arrange(world, "sweep", "strong")
    other = register(world.settings.tracking, constant_model(3, label=0), ["cat", "dog", "fish"])
    with pytest.raises(DataError) as err:
        run(world, version=int(other))
    assert "['cat', 'dog', 'fish']" in str(err.value) and str(world.result.class_names) in str(err.value)
    assert champion_version(world) == world.versions["strong"]


def test_decide_compares_accuracy_plus_margin_and_never_replaces_a_champion_with_itself():
    low, high = Evaluation("1", "a", 0.5, 1.0), Evaluation("2", "b", 0.75, 0.6)
    assert decide(high, low, margin=0.25, force=False)[0]  # a tie with the margin promotes
    assert not decide(high, low, margin=0.26, force=False)[0]
    assert decide(low, high, margin=0.0, force=True)[0]
    assert decide(high, None, margin=1.0, force=False)[0]
    assert decide(high, high, margin=0.0, force=True) == (False, "kept: v2 is the champion already")


def test_the_promote_config_group_is_typed(tmp_path):
    options = load_promote_config(compose_config(tmp_path, [*TINY, "promote.margin=0.05"]))
    assert options == PromoteConfig(version=None, margin=0.05, force=False)
    for bad, key in (("promote.margin=2", "promote.margin"), ("+promote.versoin=3", "versoin"),
                     ("promote.force=maybe", "force")):  # fmt: skip
        with pytest.raises(ConfigError, match=key):
            load_promote_config(compose_config(tmp_path, [*TINY, bad]))


def _cli(world, *overrides):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, "-m", "tune.promote", *TINY, *overrides],
        cwd=world.root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_command_line_prints_both_versions_and_moves_the_alias(world):
    arrange(world, "strong", "weak")
    done = _cli(world, "promote.margin=0.01")
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout[done.stdout.index("registered model:") :].splitlines()
    assert table[1].split() == ["version", "run", "id", "test_accuracy", "test_loss"]
    for row, key in zip(table[2:4], ("strong", "weak")):
        role, version, run_id, acc, loss = row.split()
        assert version == f"v{world.versions[key]}" and float(acc) == pytest.approx(world.accuracy[key], abs=1e-4)
    assert table[4].startswith("decision: promoted") and champion_version(world) == world.versions["strong"]


def test_the_command_line_reports_our_errors_in_one_line_with_status_2(world):
    done = _cli(world, "data.name=nothing")
    errors = [line for line in done.stderr.splitlines() if line.startswith("tune: error:")]
    assert done.returncode == 2 and len(errors) == 1
    assert "nothing-classifier" in errors[0] and world.name in errors[0]
