"""What every `tune` command does around its work: interrupts, and errors of ours as one line.

    tune: error: model.head.dropout=1.5; expected a number in [0, 1)     (exit status 2)
    tune: interrupted; ...                                               (exit status 130)

A `TuneError` is a problem with the input that the message explains; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

from tune import interrupts
from tune.errors import TuneError

T = TypeVar("T")
ERROR_STATUS = 2  # a problem with the input, as argparse uses for usage errors
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report Ctrl-C


def run_command(task: Callable[[], T], on_interrupt: str = "") -> T:
    """Run `task` with SIGINT and SIGTERM raising `KeyboardInterrupt`; return what it returns.

    Args:
        task: the command's work.
        on_interrupt: what an interrupt left behind, appended to the message.

    Exits:
        2 after printing `tune: error: <message>` for a `TuneError`; 130 after an interrupt.
    """
    interrupts.install()
    try:
        return task()
    except TuneError as err:
        print(f"tune: error: {err}", file=sys.stderr)
        sys.exit(ERROR_STATUS)
    except KeyboardInterrupt:
        print(f"tune: interrupted{on_interrupt}", file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)
