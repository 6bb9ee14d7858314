"""`python -m tune.launch workers=N [options] [tune arguments]`: one distributed sweep on this machine.

    python -m tune.launch workers=2 experiment=quickstart
    python -m tune.launch workers=4 --backend-store-uri postgresql://tune@db:5432/mlflow \\
        --artifacts /data/mlruns/artifacts data.root=~/flowers data.name=flowers

Starts, each with its output streamed line by line under a prefix:

- `[server]`: `mlflow server` on 127.0.0.1 and a free port (`--port` to choose), with the
  SQLite store `mlruns/mlflow.db` under the folder you launch from and its artifacts in
  `mlruns/artifacts` beside it (where `python -m tune` alone records), or the database
  `--backend-store-uri` names and the artifact location `--artifacts` names (each
  process writes its artifacts there itself; see `tune.launcher.server`); the rest
  start once it answers on /health;
- `[chief]`: `python -m tune <tune arguments>` as keras-tuner's chief
  (`KERASTUNER_TUNER_ID=chief`), serving the oracle on 127.0.0.1 and a free port, then
  evaluating, refitting and registering the best model;
- `[worker0]` ... `[worker<N-1>]`: the same command as workers `tuner0` ... `tuner<N-1>`,
  each training the trials the oracle hands it.

Every process gets `MLFLOW_TRACKING_URI` (the server) and the oracle's address. With GPUs
visible (`$CUDA_VISIBLE_DEVICES`, else `nvidia-smi -L`) each worker gets one; on CPU the
cores are split between the workers (`TF_NUM_INTRAOP_THREADS`, `OMP_NUM_THREADS`); see
`tune.launcher.resources`. Each process logs to its own Hydra folder,
`experiments/<experiment>/launch-<time>/<chief|workerI>/`.

Ctrl-C (or SIGTERM) stops everything the launcher started: SIGTERM first (a `tune` process
marks its runs KILLED), SIGKILL after `--grace` seconds; the server last. The same happens
when the chief exits (the search is over) or the server dies. A worker that dies while the
chief runs is restarted with the same tuner id, so the oracle hands it the same trial and
that trial runs again; after `--max-restarts` restarts of one worker the launch stops.

Exit status: the chief's; 1 when the server or a worker ended the launch; 130 after Ctrl-C
(128 + the signal). The last line says where the runs are.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple
from urllib.parse import urlsplit, urlunsplit

from tune.errors import ConfigError
from tune.launcher.processes import placement, process_specs
from tune.launcher.resources import LOOPBACK, free_port
from tune.launcher.server import ServerStore, server_command, server_store, wait_until_ready
from tune.launcher.supervisor import LAUNCH, ChildSpec, Outcome, Role, Supervisor
from tune.tracking.uri import absolute_path, is_local_path, sqlite_path

WORKERS_KEY = "workers="
REFUSED = {  # tune arguments the launcher cannot pass on, and why
    "tracking.uri": "the launcher's own tracking server is the store; use --backend-store-uri",
    "-m": "one launch runs one sweep; launch once per sweep instead of -m",
    "--multirun": "one launch runs one sweep; launch once per sweep instead of --multirun",
}


def tune_command() -> List[str]:
    """`python -m tune` in this Python environment."""
    return [sys.executable, "-m", "tune"]


def launch(
    workers: int,
    overrides: Sequence[str] = (),
    root: Optional[Path] = None,
    backend_store_uri: Optional[str] = None,
    artifacts: Optional[str] = None,
    port: Optional[int] = None,
    max_restarts: int = 3,
    grace: float = 30.0,
    command: Optional[Sequence[str]] = None,
    out: Optional[TextIO] = None,
) -> int:
    """Run one distributed sweep (see the module's docstring); return the exit status.

    Args:
        workers: keras-tuner workers (at least 1).
        overrides: the arguments of `python -m tune`, the same for the chief and each worker.
        root: the launch folder (the processes' working folder; the default store's home);
            None: the current folder.
        backend_store_uri: the server's database; None: `sqlite:///<root>/mlruns/mlflow.db`.
        artifacts: where new experiments keep their artifacts, a folder or URI; None: `<root>/mlruns/artifacts`.
        port: the server's port on 127.0.0.1; None: a free one.
        max_restarts: restarts allowed to each worker.
        grace: seconds between SIGTERM and SIGKILL when stopping.
        command: the program the chief and workers run, `overrides` appended; None: `python -m tune`.
        out: where the prefixed lines go; None: standard output.

    Raises:
        ConfigError: `workers` is below 1.
    """
    if workers < 1:
        raise ConfigError(f"workers={workers}; expected a whole number >= 1")
    root = Path(root or Path.cwd()).resolve()
    store = server_store(_store_home(overrides, root), backend_store_uri, artifacts)
    _make_local_folders(store)
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    supervisor = Supervisor(out or sys.stdout, grace=grace, max_restarts=max_restarts)
    server = ChildSpec("server", server_command(store, LOOPBACK, port), dict(os.environ), Role.SERVICE, str(root))
    sweep = [*(command or tune_command()), *overrides]
    with _signals_to(supervisor):
        outcome = _serve_and_sweep(
            supervisor, server, url, lambda: process_specs(workers, sweep, url, root, os.environ)
        )
    supervisor.say(LAUNCH, summary(outcome, url, store))
    return outcome.status


def _serve_and_sweep(
    supervisor: Supervisor, server: ChildSpec, url: str, sweep: Callable[[], List[ChildSpec]]
) -> Outcome:
    """Start the server; once it answers at `url`, the chief and the workers `sweep()` makes; watch them to the end.

    The specs are made only then, so the oracle's port is picked just before the chief binds it.
    """
    process = supervisor.start(server).process
    alive = lambda: process.poll() is None and not supervisor.interrupted()
    if not wait_until_ready(url, alive):
        if not alive():
            return supervisor.watch()  # ends at once: the server's exit or the signal
        return supervisor.end(f"the tracking server did not answer on {url}/health; stopping", 1)
    supervisor.say(LAUNCH, f"tracking UI: {url} (while the sweep runs)")
    specs = sweep()
    supervisor.say(LAUNCH, placement(specs))
    for spec in specs:
        supervisor.start(spec)
    return supervisor.watch()


def _store_home(overrides: Sequence[str], root: Path) -> Path:
    """The folder of the default store: `paths.root_dir` when the overrides set it, else `root`."""
    for arg in overrides:
        if arg.startswith("paths.root_dir="):
            return Path(absolute_path(arg.partition("=")[2], root))
    return root


def _make_local_folders(store: ServerStore) -> None:
    """The SQLite file's folder and a local artifact folder, so the server can create what goes in them."""
    database = sqlite_path(store.backend)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    if is_local_path(store.artifacts):
        Path(store.artifacts).mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _signals_to(supervisor: Supervisor) -> Iterator[None]:
    """SIGINT and SIGTERM ask `supervisor` to stop (in the main thread; elsewhere signals stay as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = lambda signum, frame: supervisor.interrupt(signum)
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def summary(outcome: Outcome, url: str, store: ServerStore) -> str:
    """The last line: how it ended, the exit status, where the runs are and how to browse them again."""
    backend = masked(store.backend)
    return (
        f"done: {outcome.reason.split(';')[0]}; exit status {outcome.status}. "
        f"The tracking UI was {url} (stopped now); runs in {backend}, artifacts in {store.artifacts}; "
        f"browse: mlflow ui --backend-store-uri {backend} --host 127.0.0.1"
    )


def masked(uri: str) -> str:
    """`uri` with its password, if any, shown as `***` (`postgresql://tune:***@db:5432/mlflow`)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def parse_args(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    """(the launcher's options with `workers`, the tune arguments in their order).

    Exits:
        2 with a usage message when `workers=N` is missing or not a positive whole number,
        or a tune argument cannot be passed on (`tracking.uri=`, `-m`).
    """
    parser = _parser()
    args, rest = parser.parse_known_args(list(argv))
    given = [arg for arg in rest if arg.startswith(WORKERS_KEY)]
    rest = [arg for arg in rest if not arg.startswith(WORKERS_KEY)]
    if len(given) != 1 or not given[0][len(WORKERS_KEY) :].isdigit() or int(given[0][len(WORKERS_KEY) :]) < 1:
        parser.error(f"expected workers=N once, N a whole number >= 1; received {given or 'none'}")
    for arg in rest:
        key = arg.partition("=")[0].lstrip("+~")
        if key in REFUSED:
            parser.error(f"{arg}: {REFUSED[key]}")
    args.workers = int(given[0][len(WORKERS_KEY) :])
    return args, rest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tune.launch",
        usage="%(prog)s workers=N [options] [tune arguments ...]",
        description=__doc__.split("\n")[0].split(": ", 1)[1],
        allow_abbrev=False,  # `--cfg` and other tune flags must not be taken for ours
    )
    add = parser.add_argument
    add("--backend-store-uri", metavar="URI", help="the server's database (default: sqlite:///mlruns/mlflow.db)")
    add("--artifacts", metavar="DIR|URI", help="where new experiments' artifacts go (default: mlruns/artifacts)")
    add("--port", type=int, help="the tracking server's port on 127.0.0.1 (default: a free one)")
    add("--max-restarts", type=int, default=3, metavar="K", help="restarts allowed to each worker (default: 3)")
    add("--grace", type=float, default=30.0, metavar="S", help="seconds from SIGTERM to SIGKILL (default: 30)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m tune.launch`; returns the exit status (see the module's docstring)."""
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    options: Dict[str, object] = dict(
        backend_store_uri=args.backend_store_uri,
        artifacts=args.artifacts,
        port=args.port,
        max_restarts=args.max_restarts,
        grace=args.grace,
    )
    return launch(args.workers, overrides, Path.cwd(), **options)
