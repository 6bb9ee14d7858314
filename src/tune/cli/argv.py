"""The command line of `tune` and `tune-promote` before Hydra reads it.

Hydra's override parser rejects an unquoted `~` (`data.root=~/fruits-360` fails to parse),
and bash leaves it unexpanded after `key=`, so a value that is `~` or starts with `~/` is
expanded here to the home folder, as the shell would (also each element of a sweep,
`data.root=~/a,~/b`; `~user` is not). `--verbose` (TensorFlow's start-up lines, see
`tune.cli.startup`) is taken out, and the overrides' keys are checked against the schema
(`tune.cli.overrides`) before Hydra composes anything.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import List, Sequence, Tuple

from hydra._internal.utils import get_args_parser

from tune.cli.overrides import check_overrides
from tune.cli.prologue import run_command
from tune.cli.startup import VERBOSE_FLAG

HOME = re.compile(r"(^|,)~(?=/|,|$)")  # a `~` that starts a value or one element of a sweep


def expand_home(arg: str) -> str:
    """`key=~/x` -> `key=<home>/x`; `key=~` -> `key=<home>`; flags and other values unchanged.

    Args:
        arg: one command-line word, e.g. "data.root=~/fruits-360".
    """
    if arg.startswith("-") or "=" not in arg:
        return arg
    key, _, value = arg.partition("=")
    home = os.path.expanduser("~")
    return f"{key}={HOME.sub(lambda m: m.group(1) + home, value)}"


def prepare_argv(argv: Sequence[str]) -> List[str]:
    """The command line Hydra gets: `--verbose` left out, `~` values expanded (`argv[0]` kept)."""
    return [argv[0], *(expand_home(arg) for arg in argv[1:] if arg != VERBOSE_FLAG)]


def overrides_and_config_dirs(args: Sequence[str]) -> Tuple[List[str], List[Path]]:
    """(the overrides, the `--config-dir` folders) of a command line without `argv[0]`, as Hydra reads it."""
    parsed, _ = get_args_parser().parse_known_args(list(args))
    dirs = [Path(parsed.config_dir).expanduser()] if parsed.config_dir else []
    return list(parsed.overrides or []), dirs


def prepare_command_line() -> None:
    """Make `sys.argv` what Hydra gets (`prepare_argv`), then check its overrides.

    Exits:
        2 after `tune: error: unknown config key ...` (see `tune.cli.overrides`).
    """
    sys.argv = prepare_argv(sys.argv)
    overrides, config_dirs = overrides_and_config_dirs(sys.argv[1:])
    run_command(lambda: check_overrides(overrides, config_dirs))
