"""Every value of the config that has a closed set or a range, checked before anything runs.

The schema (`tune.config.schema`) has already checked keys and types while Hydra composed
the config. Here each value is checked against what it may be, before any image is
scanned, any weight fetched or any run recorded; a failure is one `ConfigError` naming
the key, the value received and what is allowed, e.g.

    model.head.dropout=1.5; expected a number in [0, 1)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from tune.config.names import check_names
from tune.config.schema import ParamSpec, SearchSpace
from tune.config.settings import Settings
from tune.data.duplicates import POLICIES
from tune.data.layout import check_apart
from tune.data.split import SPLIT_METHODS
from tune.errors import ConfigError
from tune.model.activations import MODES, STORAGE, plan_cache
from tune.model.backbones import BASE_MODELS, check_size, count_thawable, get_spec, resolve_image_size
from tune.model.classifier import POOLING
from tune.model.recipe import OBJECTIVES, OPTIMIZERS, PRECISIONS
from tune.model.space import DEFAULTS, HYPERPARAMETERS, base_names, choices, is_unset
from tune.search.tuners import TUNERS, accepted_options
from tune.tracking.uri import registry_problem

Rule = Callable[[Any], Optional[str]]  # None when the value is allowed, else what is expected


def one_of(*allowed: Any) -> Rule:
    """A value from `allowed`."""
    return lambda value: None if value in allowed else f"expected one of {list(allowed)}"


def number(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> Rule:
    """A number between `low` and `high`; `*_open` leaves that end out."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"

    def rule(value: Any) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return f"expected a number in {interval}"
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        return f"expected a number in {interval}" if below or above else None

    return rule


def whole(low: int, high: float = math.inf) -> Rule:
    """A whole number between `low` and `high`, both included."""
    span = f"at least {low}" if high == math.inf else f"in {low}..{int(high)}"
    return lambda value: (
        None if not isinstance(value, bool) and low <= value <= high else f"expected a whole number {span}"
    )


def cache_mode(value: Any) -> Optional[str]:
    """auto, on or off; a YAML file's bare on/off arrives as the string of a boolean."""
    problem = one_of(*MODES)(value)
    if problem and value in ("True", "False"):
        problem += '; YAML reads a bare on or off as a boolean: quote it ("on")'
    return problem


# Dotted key -> what its value may be. Keys under an unset optional group (data.synthetic)
# are skipped.
RULES: Dict[str, Rule] = {
    "seed": whole(0, 2**32 - 2),  # NumPy's seeds stop at 2**32 - 1, and the tuner's is seed + 1
    "data.batch_size": whole(1),
    "data.validation_fraction": number(0, 1, low_open=True, high_open=True),
    "data.test_fraction": number(0, 1, low_open=True, high_open=True),
    "data.validation_split": one_of(*SPLIT_METHODS),
    "data.group_distance": whole(0, 64),
    "data.duplicates": one_of(*POLICIES),
    "data.bad_files": one_of("skip", "error"),
    "data.max_image_pixels": whole(1),
    "data.synthetic.classes": whole(2, 8),
    "data.synthetic.train_per_class": whole(2),
    "data.synthetic.test_per_class": whole(1),
    "data.synthetic.image_size": whole(8),
    "model.name": one_of(*BASE_MODELS),
    "model.head.pooling": one_of(*POOLING),
    "model.head.dropout": number(0, 1, high_open=True),
    "model.head.grid": whole(1),
    "tuner.name": one_of(*TUNERS),
    "tuner.objective": one_of(*OBJECTIVES),
    "tuner.baseline_margin": number(0, 1),
    "tuner.keep_checkpoints": one_of("best", "all"),
    "tuner.distribution_strategy": one_of(None, "mirrored"),
    "tuner.distributed.wait_seconds": number(0),
    "training.head_epochs": whole(1),
    "training.fine_tune_epochs": whole(0),
    "training.fine_tune_lr_factor": number(0, 1, low_open=True),
    "training.patience": whole(0),
    "training.verbose": one_of(0, 1, 2),
    "training.activation_cache": cache_mode,
    "training.activation_storage": one_of(*STORAGE),
    "training.precision": one_of(*PRECISIONS),
    "training.augment.views": whole(0),
    "training.augment.flip": one_of("horizontal", "vertical", "horizontal_and_vertical", ""),
    "training.augment.rotation": number(0, 0.5),
    "training.augment.zoom": number(0, 1, high_open=True),
    "promote.margin": number(0, 1),
}
# search.<name> -> the range its values may take
DIMENSIONS = {
    "learning_rate": number(0, low_open=True),
    "momentum": number(0, 1, high_open=True),
    "head_width": whole(1),
    "optimizer": one_of(*OPTIMIZERS),
    "head_depth": whole(0, 1),
    "head_epochs": whole(1),
}
# keras-tuner arguments `tune` sets itself -> what to use instead
SET_BY_TUNE = {
    "hypermodel": "the model comes from model.* and search.*",
    "objective": "use tuner.objective",
    "directory": "use paths.tuner_dir",
    "project_name": "each search gets its own project (see tune.search.project)",
    "overwrite": "use tuner.overwrite",
}


def check_settings(settings: Settings) -> None:
    """Check every value that can be checked without data or weights; the first problem raises.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    for key, rule in RULES.items():
        found, value = lookup(settings, key)
        problem = rule(value) if found else None
        if problem:
            raise ConfigError(f"{key}={value!r}; {problem}")
    if settings.promote.version is not None and settings.promote.version < 1:
        raise ConfigError(f"promote.version={settings.promote.version}; expected a version number >= 1 or null")
    problem = registry_problem(settings.tracking.uri)
    if problem:
        source = "" if settings.tracking_source == "tracking.uri" else f" (from {settings.tracking_source})"
        raise ConfigError(f"tracking.uri='{settings.tracking.uri}'{source}: {problem}")
    check_names(settings.tracking, settings.data.name, settings.params())
    plan_cache(settings.training.activation_cache, settings.training.augment)
    check_search(settings.search, settings.data.image_size, settings.model.weights)
    check_tuner_options(settings.tuner.options)


def lookup(settings: Settings, key: str) -> tuple:
    """(found, value) of a dotted key; not found when a group on the way is unset (None)."""
    value: Any = settings
    for part in key.split("."):
        if value is None:
            return False, None
        value = getattr(value, part)
    return True, value


def check_search(space: SearchSpace, requested_size: Optional[List[int]], weights: Optional[str]) -> None:
    """Each search dimension fits its range, every base exists and takes the image size.

    Raises:
        ConfigError: naming the dimension or key.
    """
    bases = base_names(space.base_model)
    for name in bases:
        get_spec(name)
        check_size(name, resolve_image_size(requested_size, bases[0]))
    if len(bases) > 1 and weights not in (None, "imagenet"):
        raise ConfigError(
            f"model.weights='{weights}' is one file, but search.base_model draws from {bases}; "
            "use imagenet or null when searching over base models"
        )
    for name, rule in DIMENSIONS.items():
        check_dimension(name, getattr(space, name), rule)
    thawable = min(count_thawable(name) for name in bases)
    check_dimension("thawed_layers", space.thawed_layers, whole(0, thawable))
    check_dimension("feature_block", space.feature_block, whole(0, min(len(get_spec(name).blocks) for name in bases)))
    check_feature_blocks(space)


def check_feature_blocks(space: SearchSpace) -> None:
    """A search whose heads all read an earlier block thaws nothing: its thawed_layers must allow 0.

    Raises:
        ConfigError: `search.feature_block` never draws 0 and `search.thawed_layers` never does either.
    """
    blocks, thawed = choices(space, "feature_block"), choices(space, "thawed_layers")
    if 0 not in blocks and 0 not in thawed:
        raise ConfigError(
            f"search.thawed_layers draws {thawed} but search.feature_block draws only {blocks}: a head on an "
            "earlier block trains on a frozen base; set search.thawed_layers.value=0 or let feature_block draw 0"
        )


def check_dimension(name: str, spec: ParamSpec, rule: Rule) -> None:
    """Check `search.<name>`: its value, each of its values, or both ends of its range.

    An optional dimension (`tune.model.space.DEFAULTS`) may be unset: it keeps its default.

    Raises:
        ConfigError: no form is set, a point breaks `rule`, min > max, or an unknown sampling.
    """
    if name in DEFAULTS and is_unset(spec):
        return
    if spec.value is not None:
        points = [spec.value]
    elif spec.values:
        points = list(spec.values)
    elif spec.min is None or spec.max is None:
        raise ConfigError(f"search.{name}: expected value, values (not empty), or both min and max; received {spec}")
    else:
        points = [spec.min, spec.max]
    for point in points:
        if HYPERPARAMETERS[name] is int and isinstance(point, float) and not point.is_integer():
            raise ConfigError(f"search.{name}: {point!r} is not a whole number")
        problem = rule(point)
        if problem:
            raise ConfigError(f"search.{name}: {point!r}; {problem}")
    if spec.value is None and not spec.values and spec.min > spec.max:
        raise ConfigError(f"search.{name}: min={spec.min} is above max={spec.max}")
    if spec.sampling not in ("linear", "log", "reverse_log"):
        raise ConfigError(f"search.{name}.sampling='{spec.sampling}'; expected one of ['linear', 'log', 'reverse_log']")


def check_tuner_options(options: Dict[str, Any]) -> None:
    """Each tuner option is one some tuner takes and `tune` does not set; seed and failure limit whole numbers >= 1."""
    for key in sorted(set(options) & set(SET_BY_TUNE)):
        raise ConfigError(f"tuner.options.{key} is set by tune; {SET_BY_TUNE[key]}")
    known = set().union(*(accepted_options(cls) for cls in TUNERS.values())) - set(SET_BY_TUNE)
    for key in sorted(set(options) - known):
        raise ConfigError(f"tuner.options.{key} is not an argument of any tuner; expected one of {sorted(known)}")
    seed = options.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 1:
        raise ConfigError(
            f"tuner.options.seed={seed!r}; expected a whole number at least 1 (keras-tuner reads 0 as "
            "no seed and draws one at random), or leave it out: the tuner's seed is then the top-level seed + 1"
        )
    if "max_consecutive_failed_trials" in options:
        limit = options["max_consecutive_failed_trials"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"tuner.options.max_consecutive_failed_trials={limit!r}; expected a whole number >= 1")


def check_folders(root: str, train_dir: str, test_dir: Optional[str]) -> None:
    """`root` and its split folders exist and are apart (`test_dir` None: no test folder).

    Raises:
        ConfigError: naming `data.root`, `data.train_dir` or `data.test_dir`; or both
            folders, when they are the same or one holds the other.
    """
    if not Path(root).is_dir():
        holding = f"{train_dir}/<class>/" + (f" and {test_dir}/<class>/" if test_dir is not None else "")
        raise ConfigError(
            f"data.root='{root}' is not a folder; expected one holding {holding} "
            "(relative paths resolve against the folder you launched from)"
        )
    for key, name in (("train_dir", train_dir), ("test_dir", test_dir)):
        if name is not None and not (Path(root) / name).is_dir():
            found = sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
            raise ConfigError(
                f"data.{key}='{name}' is not a folder in '{root}'; it holds {found} "
                "(class folders right there, no split folders? use data=one_folder)"
            )
    check_apart(root, train_dir, test_dir)
