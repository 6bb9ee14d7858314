"""Chief/worker mode: the role from config and environment, and how chief and workers share a project."""

from __future__ import annotations

import os
import threading
import time

import keras_tuner as kt
import pytest

from conftest import TINY, make_settings
from tune.config.schema import DistributedConfig
from tune.errors import ConfigError, DistributedError, ProjectBusyError
from tune.search.prepare import search_definition
from tune.search.project import chief_alive, join_project, open_project
from tune.search.roles import Role, exported, resolve_role, same_oracle
from tune.search.tuners import search_failed, stop_workers_after_failures

ENV = {"KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_IP": "10.0.0.5", "KERASTUNER_ORACLE_PORT": "8000"}


def test_without_config_or_environment_a_sweep_runs_in_one_process():
    role = resolve_role(DistributedConfig(), {"PATH": "/bin"})
    assert role == Role() and not role.distributed and not role.chief and not role.worker and role.address == ""


def test_the_role_comes_from_the_environment_the_config_or_both_when_they_agree():
    from_env = resolve_role(DistributedConfig(), ENV)
    assert from_env == Role("tuner0", "10.0.0.5", 8000) and from_env.worker and from_env.address == "10.0.0.5:8000"
    from_config = resolve_role(DistributedConfig("chief", "10.0.0.5", 8000), {})
    assert from_config.chief and not from_config.worker
    mixed = resolve_role(DistributedConfig(tuner_id="tuner0", oracle_port=8000), ENV)
    assert mixed == from_env


@pytest.mark.parametrize(
    "config, environ, message",
    [
        (DistributedConfig(oracle_port=8001), ENV, r"tuner.distributed.oracle_port='8001' but KERASTUNER_ORACLE_PORT"),
        (DistributedConfig(tuner_id="chief"), ENV, r"tuner_id='chief' but KERASTUNER_TUNER_ID='tuner0'"),
        (DistributedConfig(tuner_id="chief"), {}, r"tuner_id set but not tuner.distributed.oracle_ip"),
        (DistributedConfig(), {"KERASTUNER_TUNER_ID": "tuner0"}, r"KERASTUNER_ORACLE_PORT"),
        (DistributedConfig(), {**ENV, "KERASTUNER_ORACLE_PORT": "http"}, r"oracle_port='http'; expected .*1..65535"),
    ],
)
def test_disagreeing_or_partial_settings_are_one_config_error(config, environ, message):
    with pytest.raises(ConfigError, match=message) as raised:
        resolve_role(config, environ)
    assert "\n" not in str(raised.value)


def test_a_role_from_the_config_is_exported_for_keras_tuner_then_the_environment_is_restored():
    environ = {"KERASTUNER_ORACLE_IP": "10.0.0.5"}
    with exported(Role("chief", "10.0.0.5", 8000), environ):
        assert environ == {**ENV, "KERASTUNER_TUNER_ID": "chief"}
    assert environ == {"KERASTUNER_ORACLE_IP": "10.0.0.5"}
    with exported(Role(), environ):
        assert environ == {"KERASTUNER_ORACLE_IP": "10.0.0.5"}


def test_a_chief_bound_to_every_address_is_reached_at_its_port():
    assert same_oracle("10.0.0.5:8000", "10.0.0.5:8000") and not same_oracle("10.0.0.5:8000", "10.0.0.6:8000")
    assert same_oracle("0.0.0.0:8000", "10.0.0.5:8000") and not same_oracle("0.0.0.0:8000", "10.0.0.5:8001")


def test_chief_and_workers_compute_one_search_definition(tmp_path):
    single = search_definition(make_settings(tmp_path, TINY), "files")
    for role in ("tuner.distributed.tuner_id=chief", "tuner.distributed.tuner_id=tuner3"):
        overrides = [*TINY, role, "tuner.distributed.oracle_ip=127.0.0.1", "tuner.distributed.oracle_port=9000"]
        assert search_definition(make_settings(tmp_path, overrides), "files") == single


@pytest.fixture
def flat(tmp_path):
    return search_definition(make_settings(tmp_path, TINY), "files")


def test_workers_share_the_chief_project_and_read_its_run_and_address(tmp_path, flat):
    with open_project(tmp_path, flat, chief=True) as chief:
        assert chief_alive(chief.folder)
        chief.set_parent_run("run-1", "127.0.0.1:9000")
        with (
            join_project(tmp_path, flat, "tuner0", "127.0.0.1:9000", timeout=1, poll=0.05) as first,
            join_project(tmp_path, flat, "tuner1", "127.0.0.1:9000", timeout=1, poll=0.05) as second,
        ):
            assert first.folder == second.folder == chief.folder
            assert (first.parent_run_id, first.oracle) == ("run-1", "127.0.0.1:9000")
    assert not chief_alive(chief.folder)


def test_a_separate_launch_or_second_chief_is_refused_while_a_chief_runs(tmp_path, flat):
    with open_project(tmp_path, flat, chief=True):
        busy = rf"already running in another process \(pid {os.getpid()}\)"
        for chief in (False, True):
            with pytest.raises(ProjectBusyError, match=busy), open_project(tmp_path, flat, chief=chief):
                pass


def test_a_second_worker_with_the_same_tuner_id_is_refused(tmp_path, flat):
    with open_project(tmp_path, flat, chief=True) as chief:
        chief.set_parent_run("run-1", "127.0.0.1:9000")
        with (
            join_project(tmp_path, flat, "tuner0", "127.0.0.1:9000", timeout=1, poll=0.05),
            pytest.raises(ProjectBusyError, match=r"worker tuner0 of this search is already running"),
            join_project(tmp_path, flat, "tuner0", "127.0.0.1:9000", timeout=1, poll=0.05),
        ):
            pass


def test_a_worker_pointed_at_another_address_is_refused(tmp_path, flat):
    with open_project(tmp_path, flat, chief=True) as chief:
        chief.set_parent_run("run-1", "127.0.0.1:9000")
        refused = r"oracle address is 127.0.0.1:9001 .* serves at 127.0.0.1:9000"
        with pytest.raises(ConfigError, match=refused), join_project(tmp_path, flat, "tuner0", "127.0.0.1:9001", 1):
            pass


def test_a_worker_ignores_the_record_of_a_chief_that_is_gone_and_times_out(tmp_path, flat):
    with open_project(tmp_path, flat, chief=True) as chief:  # a chief that recorded its run, then ended
        chief.set_parent_run("run-1", "127.0.0.1:9000")
    started = time.monotonic()
    missing = r"no chief of search \w+ recorded its sweep run .* within 0.3 s"
    with pytest.raises(DistributedError, match=missing), join_project(tmp_path, flat, "tuner0", "127.0.0.1:9000", 0.3):
        pass
    assert time.monotonic() - started < 5


def test_a_restarted_chief_forgets_the_old_address_until_it_records_its_own(tmp_path, flat):
    with open_project(tmp_path, flat, chief=True) as chief:
        chief.set_parent_run("run-1", "127.0.0.1:9000")
    joined = {}

    def worker():
        with join_project(tmp_path, flat, "tuner0", "127.0.0.1:9001", timeout=10, poll=0.05) as project:
            joined["run"] = project.parent_run_id

    with open_project(tmp_path, flat, chief=True) as chief:  # restarted on another port
        assert chief.parent_run_id == "run-1" and chief.oracle is None  # the run resumes; the address is new
        thread = threading.Thread(target=worker)
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive()  # the old address is not this chief's: the worker waits
        chief.set_parent_run("run-1", "127.0.0.1:9001")
        thread.join(timeout=10)
    assert joined == {"run": "run-1"}


def test_a_worker_that_comes_after_the_chief_stopped_serving_leaves_at_once(tmp_path, flat):
    with open_project(tmp_path, flat, chief=True) as chief:
        chief.set_parent_run("run-1", "127.0.0.1:9000")
        with join_project(tmp_path, flat, "tuner0", "127.0.0.1:9000", timeout=1, poll=0.05) as early:
            assert not early.closed
        chief.close_oracle()  # the search ended; the chief refits and registers
        with join_project(tmp_path, flat, "tuner1", "127.0.0.1:9000", timeout=1, poll=0.05) as late:
            assert late.closed
    with open_project(tmp_path, flat, chief=True) as again:  # a new chief serves afresh
        assert not again.closed
        missing = r"no chief of search \w+ recorded its sweep run"
        with pytest.raises(DistributedError, match=missing), join_project(tmp_path, flat, "tuner1", "x:1", 0.2, 0.05):
            pass


def _oracle(tmp_path, name: str) -> kt.Oracle:
    """A random-search oracle that stops after 2 failed trials in a row, as a chief holds it."""
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("val_accuracy", "max"), max_trials=10, max_consecutive_failed_trials=2, seed=0
    )
    oracle._set_project_dir(str(tmp_path), name)
    space = kt.HyperParameters()
    space.Float("learning_rate", 1e-4, 1e-2)
    oracle.update_space(space)
    return oracle


def _end(oracle: kt.Oracle, trial, status: str) -> None:
    if status == "COMPLETED":
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
    trial.status = status
    oracle.end_trial(trial)


def test_a_chief_tells_its_workers_to_stop_instead_of_failing_their_calls_after_failures_in_a_row(tmp_path):
    plain = _oracle(tmp_path, "plain")  # keras-tuner alone: the limit raises inside the worker's call
    _end(plain, plain.create_trial("tuner0"), "FAILED")
    with pytest.raises(RuntimeError, match="consecutive failures"):
        _end(plain, plain.create_trial("tuner0"), "FAILED")
    assert plain.ongoing_trials  # and its trial is never let go: a chief would wait for ever

    oracle = _oracle(tmp_path, "chief")
    stop_workers_after_failures(oracle)
    first, other = oracle.create_trial("tuner0"), oracle.create_trial("tuner1")
    _end(oracle, first, "FAILED")
    _end(oracle, oracle.create_trial("tuner0"), "FAILED")  # the limit, without an error
    assert search_failed(oracle) and "tuner0" not in oracle.ongoing_trials
    assert oracle.stopped_after_failures.startswith("2 trials failed in a row")
    assert oracle.create_trial("tuner0").status == "STOPPED"
    assert oracle.create_trial("tuner1").trial_id == other.trial_id  # a restarted worker gets its trial back
    _end(oracle, other, "COMPLETED")
    assert oracle.create_trial("tuner1").status == "STOPPED"  # the stop stands: no new trial is drawn
    assert oracle.ongoing_trials == {} and oracle.tuner_ids == set()  # what lets the chief's server end
