"""The search space: each `search.<name>` config entry declared as a keras-tuner hyperparameter.

    search.learning_rate: {min: 1e-4, max: 1e-2, sampling: log}  ->  hp.Float(..., sampling="log")
    search.head_width: {values: [128, 256]}                       ->  hp.Choice("head_width", [128, 256])
    search.thawed_layers: {value: 2}                              ->  hp.Fixed("thawed_layers", 2)

`search.optimizer`, `search.head_depth`, `search.feature_block` and `search.head_epochs` are
optional: unset (no value, values or range), they are not declared and a trial uses
`DEFAULTS`, the classic recipe (for `head_epochs`, `training.head_epochs`). A dimension
that only matters for one value of another is declared in keras-tuner's `conditional_scope`
of it (`CONDITIONS`): `head_width` only with a hidden layer
(`head_depth` 1), `momentum` only with SGD, `thawed_layers` only for a head on the base's
last block (a head on an earlier block trains on a frozen base). Where it does not apply,
keras-tuner neither draws nor records it, and the trial uses `UNUSED`.

keras-tuner adds its own `tuner/*` values (Hyperband's epoch budget and the trial it
continues); `trial_values` leaves them out, `continuation` reads them. `space_points` counts
the distinct points of a declared space (a float range without a step has no end of them).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

import keras_tuner as kt

from tune.config.schema import ParamSpec, SearchSpace
from tune.errors import ConfigError

# name -> the type its values have (a range of it draws this type), in the order of
# declaration: a dimension after the one it depends on (CONDITIONS)
HYPERPARAMETERS = {
    "base_model": str,  # a key of tune.model.backbones.BASE_MODELS
    "feature_block": int,  # the block the head reads: 0 the base's last, k >= 1 k blocks before it
    "head_depth": int,  # hidden Dense layers of the head, 0 or 1
    "head_width": int,  # units of the head's hidden Dense layer, >= 1
    "optimizer": str,  # a key of tune.model.recipe.OPTIMIZERS: sgd | adam
    "learning_rate": float,  # learning rate of phase 1, > 0
    "momentum": float,  # SGD momentum, in [0, 1)
    "thawed_layers": int,  # weight-bearing base layers fine-tuned in phase 2, >= 0
    "head_epochs": int,  # phase 1's epochs, >= 1; early stopping may end it sooner
}
# optional dimension -> the value a trial uses when search.<name> is unset (the classic recipe);
# None: the trial uses the training config's value (head_epochs: training.head_epochs)
DEFAULTS = {"feature_block": 0, "head_depth": 1, "optimizer": "sgd", "head_epochs": None}
# dimension -> (the dimension it depends on, the value under which it applies)
CONDITIONS = {"head_width": ("head_depth", 1), "momentum": ("optimizer", "sgd"), "thawed_layers": ("feature_block", 0)}
# conditional dimension -> the value a trial uses where it does not apply
UNUSED = {"head_width": None, "momentum": None, "thawed_layers": 0}


def is_unset(spec: ParamSpec) -> bool:
    """Whether `spec` has no value, no values and no range (an optional dimension left out)."""
    return spec.value is None and not spec.values and spec.min is None and spec.max is None


def declare_space(hp: kt.HyperParameters, space: SearchSpace) -> Dict[str, Any]:
    """Declare every dimension of `space` in `hp`; return the trial's values (`trial_settings`)."""
    for name in HYPERPARAMETERS:
        spec = getattr(space, name)
        if name in DEFAULTS and is_unset(spec):
            continue
        parent, applies_to = CONDITIONS.get(name, (None, None))
        if parent in {one.name for one in hp.space}:
            with hp.conditional_scope(parent, [applies_to]):
                declare(hp, name, spec)
        else:
            declare(hp, name, spec)
    return trial_settings(hp)


def trial_settings(hp: kt.HyperParameters) -> Dict[str, Any]:
    """Every dimension's value for the trial `hp`: drawn, else `DEFAULTS` (unset) or `UNUSED` (not applying)."""
    return {name: hp.values.get(name, DEFAULTS.get(name, UNUSED.get(name))) for name in HYPERPARAMETERS}


def choices(space: SearchSpace, name: str) -> List[int]:
    """Every whole number `search.<name>` can draw; its default alone when unset (`whole_choices`)."""
    spec = getattr(space, name)
    return [DEFAULTS[name]] if name in DEFAULTS and is_unset(spec) else whole_choices(spec)


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
    declare_space(hp, space)
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
    """How many distinct points the declared space `hp` has, >= 1; None when a dimension is unbounded.

    A conditional dimension counts only under the values of its parent it applies to.
    """
    counts = {one.name: dimension_points(one) for one in hp.space}
    if any(values is None for values in counts.values()):
        return None
    total = 1
    for root in [one.name for one in hp.space if not one.conditions]:
        children = [one for one in hp.space if any(c.name == root for c in one.conditions)]
        total *= sum(
            math.prod(len(counts[c.name]) for c in children if all(k.is_active({root: v}) for k in c.conditions))
            for v in counts[root]
        )
    return total


def grid_points(hp: kt.HyperParameters) -> Iterator[Dict[str, Any]]:
    """Each distinct point of the finite declared space `hp`, in keras-tuner's order (first dimension slowest).

    A point holds only the dimensions that apply to it, so the points that differ only in a
    dimension that does not apply come once.
    """
    seen = set()
    for combination in itertools.product(*(dimension_points(one) for one in hp.space)):
        point: Dict[str, Any] = {}
        for one, value in zip(hp.space, combination):
            if all(condition.is_active(point) for condition in one.conditions):
                point[one.name] = value
        if tuple(point.items()) not in seen:
            seen.add(tuple(point.items()))
            yield point


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
