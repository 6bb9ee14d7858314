"""A throwaway PostgreSQL server on 127.0.0.1 for tests that need a database store.

`postgres_server()` makes a temporary folder, `initdb`s a cluster in it, starts `postgres`
on a free loopback port (its unix socket in the same folder, so it touches nothing of the
machine's), creates a database and yields its URI, `postgresql://tune@127.0.0.1:<port>/mlflow`
(no password: the cluster trusts local connections). Afterwards it stops the server and
removes the folder.

PostgreSQL refuses to run as root; as root the cluster belongs to the `postgres` user and
every server command runs as that user. The server binaries come from `$PG_BINDIR`, else
`initdb` on `PATH`, else the newest `/usr/lib/postgresql/<version>/bin` (Debian's place;
CI installs them). Without them, or as root without a `postgres` user, the test is skipped.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

USER = "tune"  # the database's superuser, named in the URI
DEBIAN_BINARIES = Path("/usr/lib/postgresql")
START_TIMEOUT = 60  # seconds for `pg_ctl start` to see the server accept connections


def binaries() -> Optional[Path]:
    """The folder of `initdb`, `pg_ctl` and `createdb`, or None when PostgreSQL's server is not installed."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # a link on PATH, e.g. /usr/local/bin/initdb
    versions = sorted(
        DEBIAN_BINARIES.glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    return versions[-1].parent if versions else None


def owner() -> Dict[str, object]:
    """`subprocess` arguments that run a command as the cluster's owner: `postgres` when we are root, else us."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("PostgreSQL refuses to run as root, and there is no `postgres` user to run it as")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(bindir: Path, folder: Path, *args: str) -> None:
    """One PostgreSQL program as the cluster's owner; its output shown only when it fails."""
    done = subprocess.run(
        [str(bindir / args[0]), *args[1:]], cwd=folder, capture_output=True, text=True, timeout=120, **owner()
    )
    if done.returncode != 0:
        log = folder / "server.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"{args[0]} failed with status {done.returncode}: {done.stdout}{done.stderr}{tail}")


@contextlib.contextmanager
def postgres_server(database: str = "mlflow") -> Iterator[str]:
    """A running PostgreSQL server with `database` in it; yields its URI; stopped and removed afterwards."""
    bindir = binaries()
    if bindir is None:
        pytest.skip("PostgreSQL's server is not installed (initdb not found; apt-get install postgresql)")
    account = owner()
    folder = Path(tempfile.mkdtemp(prefix="tune-postgres-"))  # not under pytest's root-only tmp folders
    if account:
        os.chown(folder, account["user"], account["group"])
    data, port = folder / "data", _free_port()
    try:
        _run(bindir, folder, "initdb", "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-locale", "-N")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c full_page_writes=off"
        _run(bindir, folder, "pg_ctl", "-D", str(data), "-l", str(folder / "server.log"), "-o", options, "-w", "-t",
             str(START_TIMEOUT), "start")  # fmt: skip
        try:
            _run(bindir, folder, "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", USER, database)
            yield f"postgresql://{USER}@127.0.0.1:{port}/{database}"
        finally:
            _run(bindir, folder, "pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
