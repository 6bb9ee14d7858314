"""A space with few points: counted, run point by point once, the same tuner every time, and resumable."""

from __future__ import annotations

import random

import keras
import keras_tuner as kt
import pytest

from tune.config.schema import ParamSpec, SearchSpace
from tune.model.space import declare_space, declared, log_sampled, space_points
from tune.search.grid import GRID, GridSearch, hyperband_draws, plan_tuner
from tune.search.tuners import make_tuner, tuner_plan


def space(**dimensions) -> SearchSpace:
    """Every dimension fixed, then `dimensions` as given."""
    fixed = dict(base_model="vgg16", head_width=32, learning_rate=1e-3, momentum=0.9, thawed_layers=1)
    specs = {name: ParamSpec(value=value) for name, value in fixed.items()}
    return SearchSpace(**{**specs, **dimensions})


@pytest.mark.parametrize(
    "dimensions, points",
    [
        ({}, 1),  # every dimension fixed
        ({"head_width": ParamSpec(values=[32, 64, 32])}, 2),  # a repeated choice counts once
        ({"thawed_layers": ParamSpec(min=0, max=4)}, 5),  # whole numbers 0..4
        ({"thawed_layers": ParamSpec(min=0, max=8, step=2)}, 5),  # 0, 2, 4, 6, 8
        ({"head_width": ParamSpec(values=[32, 64]), "thawed_layers": ParamSpec(min=1, max=3)}, 6),
        ({"momentum": ParamSpec(min=0.1, max=0.5, step=0.1)}, 5),  # a stepped float range is finite
        ({"learning_rate": ParamSpec(min=1e-4, max=1e-2, sampling="log")}, None),  # a float range: unbounded
    ],
)
def test_the_distinct_points_of_a_space_are_counted(dimensions, points):
    assert space_points(declared(space(**dimensions))) == points


def test_log_sampled_ranges_are_named():
    hp = declared(space(learning_rate=ParamSpec(min=1e-4, max=1e-2, sampling="log")))
    assert log_sampled(hp) == ["learning_rate"]
    assert log_sampled(declared(space())) == []


@pytest.mark.parametrize("max_epochs, factor", [(10, 3), (3, 3), (100, 3), (27, 3), (20, 2), (5, 4)])
def test_hyperband_draws_the_first_round_of_every_bracket_as_keras_tuner_sizes_them(max_epochs, factor):
    oracle = kt.oracles.HyperbandOracle(kt.Objective("score", "max"), max_epochs=max_epochs, factor=factor)
    brackets = range(oracle._get_num_brackets())  # keras-tuner's own sizes, to check the copy against
    assert hyperband_draws(max_epochs, factor, 2) == 2 * sum(oracle._get_size(b, 0) for b in brackets)


def test_hyperband_draws_from_the_usual_budget():
    assert hyperband_draws(10, 3, 1) == 22  # brackets of 12, 6 and 4 new trials
    assert hyperband_draws(10, 3, None) == float("inf")


@pytest.mark.parametrize(
    "name, options, points, expected",
    [
        ("bayesian", {"max_trials": 10}, 1, GRID),
        ("random", {"max_trials": 10}, 10, GRID),  # as many points as trials: each once
        ("random", {"max_trials": 10}, 11, "random"),
        ("bayesian", {"max_trials": 3}, None, "bayesian"),  # unbounded: the configured tuner
        ("hyperband", {"max_epochs": 10, "factor": 3, "hyperband_iterations": 1}, 21, GRID),
        ("hyperband", {"max_epochs": 10, "factor": 3, "hyperband_iterations": 1}, 22, "hyperband"),
    ],
)
def test_a_grid_runs_when_the_space_has_no_more_points_than_the_tuner_would_try(name, options, points, expected):
    plan = plan_tuner(name, options, points)
    assert plan.name == expected and plan.points == points
    assert (plan.note != "") == (expected == GRID)
    if expected == GRID:
        assert f"{points} distinct point" in plan.note


def test_the_tuner_choice_depends_on_the_config_alone():
    """The same config, planned twice (as a resumed search is), gets the same tuner; defaults filled in."""
    small = declared(space(thawed_layers=ParamSpec(min=1, max=2)))
    plans = [tuner_plan("bayesian", {"max_trials": 3}, declared(space(thawed_layers=ParamSpec(min=1, max=2))))]
    plans.append(tuner_plan("bayesian", {"max_trials": 3}, small))
    assert plans[0] == plans[1] and plans[0].name == GRID and plans[0].points == 2
    assert tuner_plan("random", {}, small).name == GRID  # RandomSearch's default max_trials, 10
    assert tuner_plan("hyperband", {}, small).name == GRID  # max_epochs=100: many more draws than 2 points


class Points(kt.HyperModel):
    """The space of a search: head_width [32, 64] x thawed_layers 0..2, everything else fixed."""

    def build(self, hp):
        points = space(head_width=ParamSpec(values=[32, 64]), thawed_layers=ParamSpec(min=0, max=2))
        declare_space(hp, points)


class Scored(GridSearch):
    """Scores a trial by its values without training anything; stops the process at trial `stop_at`."""

    stop_at = None

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        self.ran.append((values["head_width"], values["thawed_layers"]))
        if len(self.ran) == self.stop_at:
            raise KeyboardInterrupt
        return {"score": values["head_width"] + values["thawed_layers"]}


def grid(folder, resume: bool, stop_at=None) -> Scored:
    tuner = Scored(
        hypermodel=Points(),
        objective=kt.Objective("score", "max"),
        max_trials=6,
        directory=str(folder),
        project_name="keras_tuner",
        overwrite=not resume,
    )
    tuner.ran, tuner.stop_at = [], stop_at
    return tuner


def test_a_grid_runs_every_point_once_then_stops(tmp_path):
    tuner = grid(tmp_path, resume=False)
    tuner.search()
    assert sorted(tuner.ran) == [(w, t) for w in (32, 64) for t in (0, 1, 2)]
    assert tuner.oracle.get_best_trials(1)[0].hyperparameters.values["head_width"] == 64


def test_a_resumed_grid_reruns_the_interrupted_point_and_goes_on(tmp_path):
    first = grid(tmp_path, resume=False, stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        first.search()
    second = grid(tmp_path, resume=True)
    second.search()
    assert second.ran[0] == first.ran[-1]  # the interrupted point runs again, first
    assert sorted(first.ran[:2] + second.ran) == [(w, t) for w in (32, 64) for t in (0, 1, 2)]
    assert len(second.oracle.trials) == 6


def test_a_grid_served_to_workers_hands_each_point_to_one_of_them_then_stops(tmp_path):
    """Chief/worker mode: the chief's oracle answers each worker's `create_trial` by its tuner id."""
    oracle = grid(tmp_path, resume=False).oracle
    handed = {f"tuner{i}": oracle.create_trial(f"tuner{i}") for i in range(6)}
    points = {tuple(t.hyperparameters.values[k] for k in ("head_width", "thawed_layers")) for t in handed.values()}
    assert len(points) == 6 and all(t.status == "RUNNING" for t in handed.values())
    assert oracle.create_trial("tuner2") is handed["tuner2"]  # a restarted worker gets its trial again
    assert oracle.create_trial("tuner6").status == "STOPPED"  # every point handed out: no idle wait
    trial = handed["tuner0"]
    trial.status = "COMPLETED"
    oracle.update_trial(trial.trial_id, {"score": 1.0})
    oracle.end_trial(trial)
    assert oracle.create_trial("tuner0").status == "STOPPED"


class SpaceOnly(kt.HyperModel):
    """Declares `space` and builds a one-layer model: enough for a tuner to draw trials."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space

    def build(self, hp):
        declare_space(hp, self.space)
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])


@pytest.mark.parametrize("name", ["random", "bayesian", "hyperband"])
def test_a_tuner_draws_the_same_trials_for_a_seed_whatever_used_pythons_random_before_it(name, tmp_path):
    """keras-tuner reads a seed of 0 as none; the default top-level seed must still fix the draws."""
    wide = space(
        head_width=ParamSpec(values=[32, 64, 128, 256, 512]),
        learning_rate=ParamSpec(min=1e-4, max=1e-1, sampling="log"),
    )
    plan = tuner_plan(name, {"max_trials": 5, "max_epochs": 9}, declared(wide))

    def draws(seed, state):
        random.seed(state)  # what ran before the sweep in this process
        folder = tmp_path / f"{seed}-{state}"
        tuner = make_tuner(plan, SpaceOnly(wide), kt.Objective("val_accuracy", "max"), folder, {}, seed, False)
        return [tuner.oracle.create_trial(f"t{i}").hyperparameters.values for i in range(3)]

    assert draws(0, 1) == draws(0, 2)
    assert draws(1, 1) == draws(1, 2) != draws(0, 1)
