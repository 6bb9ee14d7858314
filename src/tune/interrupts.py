"""Ctrl-C and `kill` end a sweep as KILLED, even when a library swallows the interrupt.

`install` makes SIGINT and SIGTERM raise `KeyboardInterrupt` and remembers that one came.
Code that runs long (a library's retry loop, a thread's join) may catch that exception
and carry on; `check`, called between trials and after the search, raises it again, so
an interrupted sweep never ends as if it had finished.
"""

from __future__ import annotations

import signal
from typing import Optional

_received: Optional[int] = None  # the signal number of the last interrupt, until `reset`


def _raise(signum, frame) -> None:
    global _received
    _received = signum
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install() -> None:
    """Make SIGINT (Ctrl-C) and SIGTERM (`kill`) raise `KeyboardInterrupt`, remembered."""
    reset()
    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)


def check() -> None:
    """Raise `KeyboardInterrupt` again if an interrupt arrived since `install` or `reset`."""
    if _received is not None:
        raise KeyboardInterrupt(f"signal {signal.Signals(_received).name}")


def reset() -> None:
    """Forget interrupts received so far."""
    global _received
    _received = None
