"""Child processes run together, their output prefixed line by line, stopped together.

Each child has a role that says what its exit means:

- `Role.MAIN` (the chief): its exit ends the run, and its status is the run's.
- `Role.SERVICE` (the tracking server): must outlive the others; its exit ends the run.
  Services are stopped last, so the others can still record while they stop.
- `Role.WORKER`: a clean exit (status 0) is fine; any other is followed by a restart with
  the same command and environment, at most `max_restarts` times, after which the run ends.

Every child starts in its own session (process group), so the terminal's Ctrl-C reaches
only the supervisor, which stops them in order: SIGTERM to each group, SIGKILL to what is
left after `grace` seconds (at once on a second Ctrl-C). Output goes to `out` as
`[name] line`; the supervisor's own lines are `[launch] ...`.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, TextIO

LAUNCH = "launch"  # the prefix of the supervisor's own lines


class Role(enum.Enum):
    MAIN = "main"
    SERVICE = "service"
    WORKER = "worker"


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child.

    Attributes:
        name: its prefix in the output, e.g. `worker0`; unique.
        command: the program and its arguments.
        env: its whole environment.
        role: what its exit means (see the module's docstring).
        cwd: its working folder; None: the supervisor's.
    """

    name: str
    command: Sequence[str]
    env: Mapping[str, str]
    role: Role
    cwd: Optional[str] = None


@dataclass
class Child:
    """A started child: its spec, its current process, its restarts so far and its output thread."""

    spec: ChildSpec
    process: subprocess.Popen
    pump: threading.Thread
    restarts: int = 0


@dataclass
class Outcome:
    """How a run ended.

    Attributes:
        reason: one line, e.g. `chief exited with status 0`.
        status: the run's exit status: the main child's own when it exited by itself (128 + N
            when signal N killed it); 128 + N after signal N reached the supervisor; else 1.
        statuses: each child's last exit status (a negative number: killed by that signal).
    """

    reason: str
    status: int
    statuses: Dict[str, Optional[int]] = field(default_factory=dict)


def describe_status(status: Optional[int]) -> str:
    """`status 0`, `status 2`, `signal SIGKILL` (a negative Popen returncode), or `still running`."""
    if status is None:
        return "still running"
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


def shell_status(status: Optional[int]) -> int:
    """A Popen returncode as a shell reports it: -N (signal N) becomes 128 + N; None becomes 1."""
    if status is None:
        return 1
    return 128 - status if status < 0 else status


class Supervisor:
    """Starts children, streams their output, restarts workers, stops everything at the end.

    Args:
        out: where prefixed lines go.
        grace: seconds between SIGTERM and SIGKILL when stopping children.
        max_restarts: how often each worker may be restarted after a failed exit.
        poll: seconds between looks at the children.
    """

    def __init__(self, out: TextIO = sys.stdout, grace: float = 30.0, max_restarts: int = 3, poll: float = 0.1):
        self.out, self.grace, self.max_restarts, self.poll = out, grace, max_restarts, poll
        self.children: Dict[str, Child] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()  # an interrupt came: look now
        self._stopping = threading.Event()  # the run is over; the children are being stopped
        self._hurry = threading.Event()  # another interrupt came while stopping: SIGKILL now
        self._signal: Optional[int] = None

    def say(self, name: str, line: str) -> None:
        """Write `[name] line` to `out`, whole, even when several threads write at once."""
        with self._lock:
            self.out.write(f"[{name}] {line}\n")
            self.out.flush()

    def start(self, spec: ChildSpec) -> Child:
        """Start `spec`'s process in its own session with a thread copying its output (stdout and stderr)."""
        process = subprocess.Popen(
            list(spec.command),
            env=dict(spec.env),
            cwd=spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pump = threading.Thread(target=self._pump, args=(spec.name, process.stdout), daemon=True)
        pump.start()
        previous = self.children.get(spec.name)
        child = Child(spec, process, pump, previous.restarts if previous else 0)
        self.children[spec.name] = child
        return child

    def _pump(self, name: str, stream) -> None:
        """Copy `stream` to `out` line by line until the child closes it; keep draining if `out` fails."""
        for raw in iter(stream.readline, b""):
            # `out` closed (e.g. a pipe into `head`): drain on anyway, a full pipe would block the child
            with contextlib.suppress(OSError, ValueError):
                self.say(name, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        stream.close()

    def interrupt(self, signum: int) -> None:
        """Ask the run to stop (safe in a signal handler); it ends with status 128 + `signum`.

        While the children are being stopped, skip the rest of the grace period: SIGKILL now.
        """
        if self._stopping.is_set():
            self._hurry.set()
        elif self._signal is None:
            self._signal = signum
        self._wake.set()

    def interrupted(self) -> bool:
        """Whether an interrupt asked the run to stop."""
        return self._signal is not None

    def watch(self) -> Outcome:
        """Watch the children until the run ends (see the module's docstring), then stop them all."""
        reason, status = None, None
        while reason is None:
            self._wake.wait(self.poll)
            if self._signal is not None:
                reason, status = f"stopping on {signal.Signals(self._signal).name}", 128 + self._signal
            else:
                reason, status = self._look()
        return self.end(reason, status)

    def _look(self):
        """(reason, status) when the run must end now; (None, None) to go on. Restarts failed workers."""
        ordered = sorted(self.children.values(), key=lambda child: child.spec.role is not Role.MAIN)
        for child in ordered:
            code, role, name = child.process.poll(), child.spec.role, child.spec.name
            if code is None or (role is Role.WORKER and code == 0):
                continue
            if role is Role.MAIN:
                return f"{name} exited with {describe_status(code)}; stopping the others", shell_status(code)
            if role is Role.SERVICE:
                return f"{name} died with {describe_status(code)}; stopping the others", None
            if child.restarts >= self.max_restarts:
                return f"{name} failed with {describe_status(code)} after {child.restarts} restarts; stopping", None
            self._restart(child, code)
        return None, None

    def _restart(self, child: Child, code: int) -> None:
        child.restarts += 1
        self.say(
            LAUNCH,
            f"{child.spec.name} exited with {describe_status(code)}; restarting it "
            f"(restart {child.restarts} of {self.max_restarts})",
        )
        self.start(child.spec)

    def end(self, reason: str, status: Optional[int] = None) -> Outcome:
        """Say `reason`, stop every child, and return the outcome (`status` None: 1)."""
        self.say(LAUNCH, reason)
        self._stopping.set()
        self.stop_all()
        statuses = {name: child.process.returncode for name, child in self.children.items()}
        status = 1 if status is None else status  # something else ended the run; the main child was stopped
        return Outcome(reason, status, statuses)

    def stop_all(self) -> None:
        """Stop every child still running, services last; wait for their output to be copied."""
        others = [child for child in self.children.values() if child.spec.role is not Role.SERVICE]
        services = [child for child in self.children.values() if child.spec.role is Role.SERVICE]
        for group in (others, services):
            self._stop(group)
        for child in self.children.values():
            child.pump.join(timeout=5)

    def _stop(self, children: List[Child]) -> None:
        """SIGTERM to each running child's process group, SIGKILL to what is left after `grace` seconds."""
        running = [child for child in children if child.process.poll() is None]
        for child in running:
            self.say(LAUNCH, f"stopping {child.spec.name}")
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while any(child.process.poll() is None for child in running) and time.monotonic() < deadline:
            if self._hurry.wait(0.05):
                break
        why = "interrupted again" if self._hurry.is_set() else f"still running after {self.grace:g} s"
        for child in running:
            if child.process.poll() is None:
                self.say(LAUNCH, f"{child.spec.name} {why}; killing it")
            _signal_group(child.process, signal.SIGKILL)  # what is left of its group, if anything
            child.process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Send `signum` to the process group `process` leads (its session), if anything is left of it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(process.pid, signum)
