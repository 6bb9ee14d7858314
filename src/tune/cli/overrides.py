"""Command-line overrides checked against the schema before Hydra composes them.

Hydra's own error for a misspelt key is long and names no alternative; this one is one line:

    tune: error: unknown config key training.head_epoch; did you mean training.head_epochs?
    tune: error: unknown option model=vgg; did you mean model=vgg16? (model: vgg16, xception)

Keys are the dotted keys of `tune.config.schema.Config`; groups and their options are the
folders and YAML files of `tune/conf` and of any `--config-dir`. Left to Hydra: `hydra.*`,
additions (`+key=...`, `++key=...`, checked by `load_settings`), the subkeys of dict
values (`tuner.options.*`), and anything the override parser itself rejects.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Dict, List, Sequence, Set, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

import tune.conf
from tune.config.schema import Config
from tune.errors import ConfigError

PACKAGE_CONF = Path(tune.conf.__file__).parent


def schema_keys(node: type = Config, prefix: str = "") -> Tuple[Set[str], Set[str]]:
    """(every dotted key of the dataclass `node`, the keys whose subkeys are free: dict values)."""
    keys: Set[str] = set()
    free: Set[str] = set()
    hints = typing.get_type_hints(node)
    for field in dataclasses.fields(node):
        key, kind = f"{prefix}{field.name}", _unwrap_optional(hints[field.name])
        keys.add(key)
        if dataclasses.is_dataclass(kind):
            more_keys, more_free = schema_keys(kind, f"{key}.")
            keys, free = keys | more_keys, free | more_free
        elif typing.get_origin(kind) in (dict, Dict):
            free.add(key)
    return keys, free


def _unwrap_optional(kind: Any) -> Any:
    """`X` of `Optional[X]`; any other type unchanged."""
    args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return args[0] if typing.get_origin(kind) is typing.Union and len(args) == 1 else kind


def group_options(config_dirs: Sequence[Path] = ()) -> Dict[str, List[str]]:
    """Config group -> its options (YAML file names without `.yaml`), from `tune/conf` and `config_dirs`."""
    groups: Dict[str, Set[str]] = {}
    for root in (PACKAGE_CONF, *config_dirs):
        for path in Path(root).rglob("*.yaml"):
            group = path.parent.relative_to(root).as_posix()
            if group != ".":
                groups.setdefault(group, set()).add(path.stem)
    return {group: sorted(options) for group, options in groups.items()}


def check_overrides(overrides: Sequence[str], config_dirs: Sequence[Path] = ()) -> None:
    """Stop on an override whose key the schema lacks or whose group option does not exist.

    Args:
        overrides: Hydra overrides as typed, e.g. ["model=vgg16", "training.head_epochs=3"].
        config_dirs: folders added with `--config-dir`, whose groups and options count too.

    Raises:
        ConfigError: one line naming the key (or group and option) and the nearest real one.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return  # Hydra reports its own parse error
    keys, free = schema_keys()
    groups = group_options(config_dirs)
    for override in parsed:
        key = override.key_or_group
        if key.split(".")[0] == "hydra" or override.is_add() or override.is_force_add():
            continue
        if key in groups:
            _check_options(key, _option_values(override), groups[key])
        elif key not in keys and not any(key.startswith(f"{name}.") for name in free):
            raise ConfigError(f"unknown config key {key}; {_nearest(key, [*keys, *groups])}")


def _option_values(override) -> List[str]:
    """The options a group override names (one, a list, or a sweep's choices); [] when not plain names."""
    try:
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else override.value()
    except HydraException:
        return []  # glob() and interval sweeps
    values = values if isinstance(values, list) else [values]
    return [value for value in values if isinstance(value, str)]


def _check_options(group: str, values: Sequence[str], options: Sequence[str]) -> None:
    for value in values:
        if value not in options:
            near = difflib.get_close_matches(value, options, n=1)
            listed = ", ".join(options)
            hint = f"did you mean {group}={near[0]}? ({group}: {listed})" if near else f"expected one of {listed}"
            raise ConfigError(f"unknown option {group}={value}; {hint}")


def _nearest(key: str, candidates: Sequence[str]) -> str:
    near = difflib.get_close_matches(key, sorted(candidates), n=1)
    return f"did you mean {near[0]}?" if near else "python -m tune --cfg job prints every key"
