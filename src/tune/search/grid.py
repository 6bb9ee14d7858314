"""A small search space run point by point: each distinct point once, then the search stops.

When the space has no more distinct points than the configured tuner would run trials, a
random or Bayesian search can only repeat points (Bayesian optimisation proposes the same
fixed point again and again, and the best of that noise wins), and Hyperband runs out of new
points in its first round and stops before continuing any trial. `plan_tuner` then runs
`GridSearch` instead, every point once with the full recipe. The choice depends on the
config alone (the space and `tuner.*`, both in the tuner project's key), so a resumed
search keeps its tuner.

keras-tuner's own `GridSearch` (1.4) keeps its walk through the grid in memory only, and a
reloaded project fails on its next trial; `PointsOracle` instead proposes the first point
no trial of the project has had, so a resumed search goes on where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional

import keras_tuner as kt

from tune.model.space import grid_points

GRID = "grid"  # the tuner name `plan_tuner` returns for a grid


class PointsOracle(kt.Oracle):
    """Proposes every point of a finite space once, in keras-tuner's order of values (first dimension slowest).

    A dimension that does not apply to a point (a conditional one) is left out of it.
    """

    def populate_space(self, trial_id: str) -> Dict[str, Any]:
        """The first point no trial has had yet; STOPPED when every point has had one."""
        space = self.get_space()
        names = {hp.name for hp in space.space}
        tried = [{n: v for n, v in t.hyperparameters.values.items() if n in names} for t in self.trials.values()]
        for point in grid_points(space):
            if point not in tried:
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": point}
        if self.ongoing_trials:
            return {"status": kt.engine.trial.TrialStatus.IDLE, "values": None}
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}


class GridSearch(kt.Tuner):
    """`keras_tuner.GridSearch` with `PointsOracle`: every point once, and a project that resumes.

    Args:
        hypermodel: the search space and recipe; every dimension must be finite.
        objective: what the tuner optimises.
        max_trials: at most this many trials; the number of points runs them all.
        seed, max_retries_per_trial, max_consecutive_failed_trials: as for any keras-tuner oracle.
        **kwargs: `keras_tuner.Tuner` arguments (directory, project_name, overwrite, ...).
    """

    def __init__(
        self,
        hypermodel=None,
        objective=None,
        max_trials=None,
        seed=None,
        max_retries_per_trial=0,
        max_consecutive_failed_trials=3,
        **kwargs,
    ):
        oracle = PointsOracle(
            objective=objective,
            max_trials=max_trials,
            seed=seed,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        super().__init__(oracle, hypermodel, **kwargs)


@dataclass(frozen=True)
class TunerPlan:
    """Which tuner a search runs, and why.

    Attributes:
        name: `tuner.name`, or `GRID` when the space is too small for it.
        points: distinct points of the space, >= 1; None when a dimension is unbounded.
        note: one line for the log and the sweep run, saying why a grid runs; "" when `tuner.name` runs.
    """

    name: str
    points: Optional[int]
    note: str = ""


def hyperband_draws(max_epochs: int, factor: int, iterations: Optional[int]) -> float:
    """How many new points keras-tuner 1.4's Hyperband draws: the first round of every bracket, each iteration.

    With `max_epochs=10, factor=3` it has 3 brackets starting 12, 6 and 4 trials: 22 draws.
    `iterations` None or 0 means no end (infinity).
    """
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:  # keras-tuner's _get_num_brackets, min_epochs 1
        epochs, brackets = epochs / factor, brackets + 1
    last = math.ceil(1 + math.log(max_epochs, factor))  # trials in the last round of bracket 0
    sizes = sum(math.ceil(last / (b + 1) * factor**b) for b in range(brackets))
    return sizes * (iterations or math.inf)


def plan_tuner(name: str, options: Dict[str, Any], points: Optional[int]) -> TunerPlan:
    """`GRID` when `points` does not exceed the trials tuner `name` would run, else `name`.

    Args:
        name: `tuner.name`: random, bayesian or hyperband.
        options: the tuner's keyword arguments with its defaults filled in (max_trials, or
            Hyperband's max_epochs, factor and hyperband_iterations).
        points: distinct points of the space (`tune.model.space.space_points`); None: unbounded.
    """
    if points is None:
        return TunerPlan(name, None)
    if name == "hyperband":
        budget = hyperband_draws(options["max_epochs"], options["factor"], options["hyperband_iterations"])
        if points >= budget:
            return TunerPlan(name, points)
        note = (
            f"the search space has {points} distinct point(s), fewer than the {budget:g} new trials Hyperband "
            f"draws (max_epochs={options['max_epochs']}, factor={options['factor']}); it would run out of points "
            "before continuing any trial, so a grid search runs each point once with the full recipe "
            "(training.head_epochs + training.fine_tune_epochs)"
        )
        return TunerPlan(GRID, points, note)
    trials = options.get("max_trials")
    if trials is not None and points > trials:
        return TunerPlan(name, points)
    note = (
        f"the search space has {points} distinct point(s), no more than tuner.options.max_trials={trials}: "
        f"a grid search runs each point once instead of tuner '{name}', then stops"
    )
    return TunerPlan(GRID, points, note)
