"""`tune.promote`: each rule on a real store holding models of known quality (a colour rule,
near-perfect on the shapes, and one that always answers one class); no sweep runs here."""

from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, make_settings
from registered import accuracy, colour_model, constant_model, register
from tune.config.schema import PromoteConfig
from tune.data import synthetic
from tune.errors import DataError, RegistryError
from tune.tracking.promotion import Evaluation, baseline_rule, decide, promote
from tune.tracking.registry import CHAMPION, version_by_alias


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny shapes and a store holding two registered models of known accuracy."""
    root = tmp_path_factory.mktemp("promote")
    settings = make_settings(root, TINY)
    data = settings.data
    synthetic.generate(Path(data.root), data.synthetic, data.train_dir, data.test_dir)
    names = sorted(p.name for p in (Path(data.root) / data.train_dir).iterdir() if p.is_dir())
    test_dir = Path(data.root) / data.test_dir
    strong, weak = colour_model(names), constant_model(len(names), label=0)
    return SimpleNamespace(
        root=root,
        settings=settings,
        names=names,
        client=MlflowClient(settings.tracking.uri),
        name=settings.tracking.registered_model_name,
        versions={
            "strong": register(settings.tracking, strong, names),
            "weak": register(settings.tracking, weak, names),
        },
        accuracy={"strong": accuracy(strong, test_dir, names), "weak": accuracy(weak, test_dir, names)},
    )


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


def test_without_a_champion_the_challenger_is_promoted_and_its_scores_recorded(world):
    arrange(world, "strong", None)
    decision = run(world)
    assert decision.promoted and decision.champion is None
    assert champion_version(world) == world.versions["strong"] == decision.challenger.version
    assert decision.challenger.test_accuracy == pytest.approx(world.accuracy["strong"])
    recorded = tags(world, "strong")
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
    arrange(world, "weak", "strong")
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
    arrange(world, "weak", "strong")
    other = register(world.settings.tracking, constant_model(3, label=0), ["cat", "dog", "fish"])
    with pytest.raises(DataError) as err:
        run(world, version=int(other))
    assert "['cat', 'dog', 'fish']" in str(err.value) and str(world.names) in str(err.value)
    assert champion_version(world) == world.versions["strong"]


def test_decide_compares_accuracy_plus_margin_and_never_replaces_a_champion_with_itself():
    low, high = Evaluation("1", "a", 0.5, 1.0), Evaluation("2", "b", 0.75, 0.6)
    assert decide(high, low, margin=0.25, force=False)[0]  # a tie with the margin promotes
    assert not decide(high, low, margin=0.26, force=False)[0]
    assert decide(low, high, margin=0.0, force=True)[0]
    assert decide(high, None, margin=1.0, force=False)[0]
    assert decide(high, high, margin=0.0, force=True) == (False, "kept: v2 is the champion already")


@pytest.mark.parametrize("sweep_status, best_status", [("FAILED", "FAILED"), ("FINISHED", "FAILED"), ("KILLED", None)])
def test_a_version_from_a_sweep_without_a_completed_trial_is_never_promoted(world, sweep_status, best_status):
    """As a sweep whose every trial failed once registered its failed trial's model."""
    client = world.client
    experiment = client.get_experiment_by_name(world.settings.tracking.experiment_name).experiment_id
    sweep = client.create_run(experiment, tags={"tune.role": "sweep"})
    if best_status is not None:
        trial = client.create_run(experiment, tags={"tune.role": "trial", "mlflow.parentRunId": sweep.info.run_id})
        client.set_terminated(trial.info.run_id, best_status)
        client.set_tag(sweep.info.run_id, "tune.best_run_id", trial.info.run_id)
    with mlflow.start_run(run_id=sweep.info.run_id):
        info = mlflow.keras.log_model(
            colour_model(world.names), name="model", registered_model_name=world.name, pip_requirements=["keras"]
        )
    client.set_terminated(sweep.info.run_id, sweep_status)
    arrange(world, "weak", None)
    client.set_registered_model_alias(world.name, "challenger", str(info.registered_model_version))
    with pytest.raises(
        RegistryError, match=f"ended {sweep_status} without a completed best trial; it is never promoted"
    ):
        run(world, force=True)
    assert version_by_alias(client, world.name, CHAMPION) is None


def test_a_version_below_the_majority_baseline_becomes_champion_only_when_forced(world):
    """Tagged as a sweep tags it when its best val_accuracy, 0.667, did not beat the baseline 0.889 + 0.05."""
    below = register(world.settings.tracking, colour_model(world.names), world.names)
    figures = {"tune.best_val_accuracy": "0.666667", "tune.baseline_val_accuracy": "0.888889"}
    for key, value in {"tune.below_baseline": "true", **figures, "tune.baseline_margin": "0.050000"}.items():
        world.client.set_model_version_tag(world.name, below, key, value)
    arrange(world, "weak", "weak")
    world.client.set_registered_model_alias(world.name, "challenger", below)
    kept = run(world)
    assert not kept.promoted and champion_version(world) == world.versions["weak"]
    assert kept.challenger.test_accuracy > kept.champion.test_accuracy  # better on the test folder, still kept
    assert "0.666667 < baseline 0.888889 + margin 0.050000" in kept.reason and "promote.force=true" in kept.reason
    forced = run(world, force=True)
    assert forced.promoted and champion_version(world) == below and "majority-class baseline" in forced.reason


def test_the_baseline_rule_only_stops_a_promotion_that_was_not_forced():
    assert baseline_rule(True, "promoted: ...", "", force=False) == (True, "promoted: ...")
    assert baseline_rule(False, "kept champion v1: ...", "v2 does not beat", force=False)[0] is False
    assert baseline_rule(True, "promoted: ...", "v2 does not beat", force=False) == (
        False,
        "kept: v2 does not beat; promote.force=true promotes it anyway",
    )
    assert baseline_rule(True, "forced over champion v1", "v2 does not beat", force=True) == (
        True,
        "forced over champion v1; v2 does not beat",
    )
