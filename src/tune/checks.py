"""Config checks that run before anything is recorded or trained.

Each failure is a `ConfigError` naming the key, the value received and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from tune.backbones import count_thawable, get_spec
from tune.config import ParamSpec, Settings
from tune.errors import ConfigError
from tune.hypermodel import HYPERPARAMETERS

BAD_FILES = ("skip", "error")  # data.bad_files: what a file that cannot be used does
# tuner arguments tune sets itself -> what to use instead
_SET_BY_TUNE = {
    "hypermodel": "the model comes from model.* and search.*",
    "objective": "use tuner.objective",
    "directory": "use paths.tuner_dir",
    "project_name": "each search gets its own project (see tune.project)",
    "overwrite": "use tuner.overwrite",
}
# objective -> direction; the keys Keras logs for a model compiled with metrics=["accuracy"]
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}


def base_names(spec: ParamSpec) -> List[str]:
    """The base models `search.base_model` can draw.

    Raises:
        ConfigError: it is a range instead of a value or a choice, or names an unknown base.
    """
    names = [spec.value] if spec.value is not None else spec.values
    if not names:
        raise ConfigError(
            "search.base_model must be a value or a choice of values "
            f"(e.g. search.base_model.values=[vgg16,xception]); received {spec}"
        )
    for name in names:
        get_spec(name)
    return [str(name) for name in names]


def image_size(settings: Settings) -> tuple:
    """(height, width): `data.image_size`, or the first base model's default size."""
    if settings.data.image_size:
        if len(settings.data.image_size) != 2:
            raise ConfigError(f"data.image_size={settings.data.image_size}; expected [height, width]")
        return tuple(int(v) for v in settings.data.image_size)
    size = get_spec(base_names(settings.search.base_model)[0]).default_size
    return size, size


def _check_range(key: str, spec: ParamSpec, low: float, high: Optional[float] = None, *, open_low=False, open_high=False):
    """Check one search dimension (value, else values, else min..max) is inside the bounds."""
    if spec.value is not None:
        points = [spec.value]
    elif spec.values:
        points = list(spec.values)
    elif spec.min is None or spec.max is None:
        raise ConfigError(f"search.{key}: expected value, values (not empty), or both min and max; received {spec}")
    else:
        points = [spec.min, spec.max]
    kind = HYPERPARAMETERS[key]
    for point in points:
        if isinstance(point, bool) or not isinstance(point, (int, float)) or (kind is int and point != int(point)):
            raise ConfigError(f"search.{key}: {point!r} is not {'a whole number' if kind is int else 'a number'}")
        below = point <= low if open_low else point < low
        above = high is not None and (point >= high if open_high else point > high)
        if below or above:
            allowed = f"{'(' if open_low else '['}{low}, {'inf)' if high is None else high}{')' if open_high or high is None else ']'}"
            raise ConfigError(f"search.{key}: {point} is outside the allowed range {allowed}")
    if spec.value is None and not spec.values and spec.min > spec.max:
        raise ConfigError(f"search.{key}: min={spec.min} is above max={spec.max}")
    if spec.sampling not in ("linear", "log", "reverse_log"):
        raise ConfigError(f"search.{key}.sampling='{spec.sampling}'; expected linear, log or reverse_log")


def check_settings(settings: Settings, tuners) -> None:
    """Check everything that can be checked without data or weights.

    Args:
        settings: the sweep's settings.
        tuners: the tuner registry (`tune.tuner.TUNERS`).

    Raises:
        ConfigError: the first problem found.
    """
    if settings.tuner.name not in tuners:
        raise ConfigError(f"tuner.name='{settings.tuner.name}'; expected one of {sorted(tuners)}")
    if settings.tuner.objective not in OBJECTIVES:
        raise ConfigError(
            f"tuner.objective='{settings.tuner.objective}' is not a value any trial reports; "
            f"expected one of {sorted(OBJECTIVES)}"
        )
    bases = base_names(settings.search.base_model)
    size = image_size(settings)
    for name in bases:
        if min(size) < get_spec(name).min_size:
            raise ConfigError(
                f"data.image_size={list(size)} is below {name}'s minimum of "
                f"{get_spec(name).min_size}x{get_spec(name).min_size} pixels"
            )
    if len(bases) > 1 and settings.model.weights not in (None, "imagenet"):
        raise ConfigError(
            f"model.weights='{settings.model.weights}' is one file, but search.base_model "
            f"draws from {bases}; use imagenet or null when searching over base models"
        )
    space = settings.search
    _check_range("learning_rate", space.learning_rate, 0.0, open_low=True)
    _check_range("momentum", space.momentum, 0.0, 1.0, open_high=True)
    _check_range("head_width", space.head_width, 1)
    _check_range("thawed_layers", space.thawed_layers, 0, min(count_thawable(b) for b in bases))
    data = settings.data
    if not 0 < data.validation_fraction < 1:
        raise ConfigError(f"data.validation_fraction={data.validation_fraction}; expected in (0, 1)")
    if data.batch_size < 1:
        raise ConfigError(f"data.batch_size={data.batch_size}; expected at least 1")
    if data.bad_files not in BAD_FILES:
        raise ConfigError(f"data.bad_files='{data.bad_files}'; expected one of {list(BAD_FILES)}")
    if data.max_image_pixels < 1:
        raise ConfigError(f"data.max_image_pixels={data.max_image_pixels}; expected at least 1")
    _check_folders(settings)
    _check_tuner_options(settings.tuner.options)


def _check_folders(settings: Settings) -> None:
    """`data.root` and its split folders exist (unless the data set is generated)."""
    data = settings.data
    if data.synthetic is not None:
        return
    if not Path(data.root).is_dir():
        raise ConfigError(
            f"data.root='{data.root}' is not a folder; expected one holding {data.train_dir}/<class>/ "
            f"and {data.test_dir}/<class>/ (relative paths resolve against the folder you launched from)"
        )
    for key in ("train_dir", "test_dir"):
        if not (Path(data.root) / getattr(data, key)).is_dir():
            found = sorted(p.name for p in Path(data.root).iterdir() if p.is_dir() and not p.name.startswith("."))
            raise ConfigError(f"data.{key}='{getattr(data, key)}' is not a folder in '{data.root}'; it holds {found}")


def _check_tuner_options(options: dict) -> None:
    """The tuner options leave to us what we set, and the failure limit is a positive whole number."""
    for key in sorted(set(options) & set(_SET_BY_TUNE)):
        raise ConfigError(f"tuner.options.{key} is set by tune; {_SET_BY_TUNE[key]}")
    limit = options.get("max_consecutive_failed_trials", 3)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"tuner.options.max_consecutive_failed_trials={limit!r}; expected a whole number >= 1")
