"""The search space: each `search.<name>` config entry declared as a keras-tuner hyperparameter.

    search.learning_rate: {min: 1e-4, max: 1e-2, sampling: log}  ->  hp.Float(..., sampling="log")
    search.head_width: {values: [128, 256]}                       ->  hp.Choice("head_width", [128, 256])
    search.thawed_layers: {value: 2}                              ->  hp.Fixed("thawed_layers", 2)

keras-tuner adds its own `tuner/*` values (Hyperband's epoch budget and the trial it
continues); `trial_values` leaves them out, `continuation` reads them. `space_points` counts
the distinct points of a declared space (a float range without a step has no end of them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import keras_tuner as kt

from tune.config.schema import ParamSpec, SearchSpace
from tune.errors import ConfigError

# name -> the type its values have (a range of it draws this type)
HYPERPARAMETERS = {
    "base_model": str,  # a key of tune.model.backbones.BASE_MODELS
    "head_width": int,  # units of the head's hidden Dense layer, >= 1
    "learning_rate": float,  # SGD learning rate of phase 1, > 0
    "momentum": float,  # SGD momentum, in [0, 1)
    "thawed_layers": int,  # weight-bearing base layers fine-tuned in phase 2, >= 0
}


def declare(hp: kt.HyperParameters, name: str, spec: ParamSpec) -> Any:
    """Register `name` in `hp` as Fixed, Choice, Int or Float, per `spec`; return its value."""
    kind = HYPERPARAMETERS[name]
    if spec.value is not None:
        return hp.Fixed(name, kind(spec.value))
    if spec.values is not None:
        return hp.Choice(name, [kind(v) for v in spec.values])
    ranged = dict(min_value=kind(spec.min), max_value=kind(spec.max), sampling=spec.sampling)
    if spec.step is not None:
        ranged["step"] = kind(spec.step)
    return (hp.Int if kind is int else hp.Float)(name, **ranged)


def declared(space: SearchSpace) -> kt.HyperParameters:
    """The hyperparameters `TransferHyperModel.build` declares for `space`, without building a model."""
    hp = kt.HyperParameters()
    for name in HYPERPARAMETERS:
        declare(hp, name, getattr(space, name))
    return hp


def dimension_points(hp: kt.engine.hyperparameters.HyperParameter) -> Optional[List[Any]]:
    """Every value one declared hyperparameter can take, in keras-tuner's order; None when unbounded.

    Fixed, Choice and Boolean: their values. Int: min..max by its step (every whole number
    when it has none). Float: its stepped values, or None (unbounded) without a step.
    """
    if isinstance(hp, kt.engine.hyperparameters.Int):
        if hp.step is None:
            return list(range(hp.min_value, hp.max_value + 1))
        return list(dict.fromkeys(int(round(v)) for v in hp.values))  # a log step yields floats
    if isinstance(hp, kt.engine.hyperparameters.Float) and hp.step is None:
        return None
    return list(dict.fromkeys(hp.values))  # keras-tuner's own list, repeats dropped


def space_points(hp: kt.HyperParameters) -> Optional[int]:
    """How many distinct points the declared space `hp` has, >= 1; None when a dimension is unbounded."""
    counts = [dimension_points(one) for one in hp.space]
    if any(values is None for values in counts):
        return None
    return math.prod(len(values) for values in counts)


def log_sampled(hp: kt.HyperParameters) -> List[str]:
    """Names of the declared ranges sampled on a log scale (`sampling: log`)."""
    return [one.name for one in hp.space if getattr(one, "sampling", None) == "log"]


def trial_values(hp: kt.HyperParameters) -> Dict[str, Any]:
    """The trial's values of our hyperparameters, keras-tuner's own `tuner/*` left out."""
    return {name: hp.values[name] for name in HYPERPARAMETERS if name in hp.values}


def whole_choices(spec: ParamSpec) -> List[int]:
    """Every whole number an integer dimension can draw: its value, its values, or min..max by step."""
    if spec.value is not None:
        return [int(spec.value)]
    if spec.values is not None:
        return sorted({int(v) for v in spec.values})
    return list(range(int(spec.min), int(spec.max) + 1, int(spec.step or 1)))


def base_names(spec: ParamSpec) -> List[str]:
    """The base models `search.base_model` can draw: its fixed value or its choice.

    Raises:
        ConfigError: it is a range, or empty.
    """
    names = [spec.value] if spec.value is not None else spec.values
    if not names:
        raise ConfigError(
            "search.base_model: expected a value or a choice of values "
            f"(e.g. search.base_model.values=[vgg16,xception]); received {spec}"
        )
    return [str(name) for name in names]


@dataclass(frozen=True)
class Continuation:
    """What keras-tuner's Hyperband hands a trial that continues an earlier one.

    Attributes:
        trial_id: the earlier trial, whose best checkpoint the model starts from.
        initial_epoch: epochs already run by the earlier trial (its whole budget), >= 1.
        epochs: this trial's total budget; it runs epochs `initial_epoch .. epochs - 1`.
    """

    trial_id: str
    initial_epoch: int
    epochs: int


def continuation(hp: kt.HyperParameters) -> Optional[Continuation]:
    """The Hyperband continuation in `hp`, or None for a trial that starts from scratch."""
    values = hp.values
    if not values.get("tuner/trial_id"):
        return None
    return Continuation(str(values["tuner/trial_id"]), int(values["tuner/initial_epoch"]), int(values["tuner/epochs"]))


def tuner_values(hp: kt.HyperParameters) -> Dict[str, Any]:
    """keras-tuner's own `tuner/*` values of a trial (Hyperband: epochs, bracket, round, ...)."""
    return {name: value for name, value in hp.values.items() if name.startswith("tuner/")}
