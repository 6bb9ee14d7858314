"""Which part a process plays in a search: the only one, keras-tuner's chief, or one of its workers.

keras-tuner runs one search across processes when three environment variables are set
(`keras_tuner.src.distribute.utils`):

    KERASTUNER_TUNER_ID     "chief" for the process that serves the oracle; "tuner0", "tuner1", ...
                            for the workers that train the trials it hands out
    KERASTUNER_ORACLE_IP    the address the chief serves the oracle on (gRPC)
    KERASTUNER_ORACLE_PORT  its port

`tuner.distributed.tuner_id`, `.oracle_ip` and `.oracle_port` set the same from the config;
`resolve_role` merges both sources (a key set both ways must agree) and `exported` puts the
result in the environment for keras-tuner while a sweep runs. With neither, a sweep runs in
one process, as it always has.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, MutableMapping, Optional

from tune.config.schema import DistributedConfig
from tune.errors import ConfigError

CHIEF = "chief"  # keras-tuner: a tuner id containing it serves the oracle
WILDCARDS = ("0.0.0.0", "::", "[::]", "")  # a chief bound to every address
# config key -> the environment variable keras-tuner reads
VARIABLES = {
    "tuner_id": "KERASTUNER_TUNER_ID",
    "oracle_ip": "KERASTUNER_ORACLE_IP",
    "oracle_port": "KERASTUNER_ORACLE_PORT",
}


@dataclass(frozen=True)
class Role:
    """A process's part in a search.

    Attributes:
        tuner_id: keras-tuner's tuner id; None for a search run in one process.
        oracle_ip: where the chief serves the oracle (None in one process).
        oracle_port: its port, 1..65535 (None in one process).
    """

    tuner_id: Optional[str] = None
    oracle_ip: Optional[str] = None
    oracle_port: Optional[int] = None

    @property
    def distributed(self) -> bool:
        """Whether the search runs across processes."""
        return self.tuner_id is not None

    @property
    def chief(self) -> bool:
        """Whether this process serves the oracle (keras-tuner's test: "chief" in the id)."""
        return self.distributed and CHIEF in self.tuner_id

    @property
    def worker(self) -> bool:
        """Whether this process trains the trials a chief hands out."""
        return self.distributed and not self.chief

    @property
    def address(self) -> str:
        """`ip:port` of the oracle; "" in one process."""
        return f"{self.oracle_ip}:{self.oracle_port}" if self.distributed else ""


def resolve_role(config: DistributedConfig, environ: MutableMapping[str, str]) -> Role:
    """The role the config and the environment give this process.

    Args:
        config: `tuner.distributed`.
        environ: the environment, e.g. `os.environ` (only read).

    Raises:
        ConfigError: a key and its variable disagree; some of the three are set but not all;
            or the port is not a whole number in 1..65535.
    """
    values = {key: _merged(key, getattr(config, key), environ.get(variable)) for key, variable in VARIABLES.items()}
    given = [key for key, value in values.items() if value is not None]
    if not given:
        return Role()
    missing = [key for key in VARIABLES if key not in given]
    if missing:
        names = ", ".join(f"tuner.distributed.{key} ({VARIABLES[key]})" for key in missing)
        raise ConfigError(
            f"chief/worker mode needs tuner_id, oracle_ip and oracle_port; {', '.join(given)} set but not {names}"
        )
    return Role(values["tuner_id"], values["oracle_ip"], _port(values["oracle_port"]))


def _merged(key: str, configured, variable: Optional[str]) -> Optional[str]:
    """One key's value as text, from the config or its variable; both set must be equal."""
    configured = None if configured is None else str(configured)
    if configured is not None and variable is not None and configured != variable:
        raise ConfigError(
            f"tuner.distributed.{key}={configured!r} but {VARIABLES[key]}={variable!r}; "
            "set one of them, or make them agree"
        )
    value = configured if configured is not None else variable
    return value if value else None


def _port(text: str) -> int:
    """The oracle port as a number in 1..65535."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ConfigError(f"tuner.distributed.oracle_port={text!r}; expected a whole number in 1..65535")
    return port


@contextlib.contextmanager
def exported(role: Role, environ: MutableMapping[str, str] = os.environ) -> Iterator[Role]:
    """Inside, the environment holds `role`'s three variables (keras-tuner reads them); then as before.

    A process that is not distributed leaves the environment alone.
    """
    saved = {variable: environ.get(variable) for variable in VARIABLES.values()}
    if role.distributed:
        environ.update({VARIABLES[key]: str(getattr(role, key)) for key in VARIABLES})
    try:
        yield role
    finally:
        for variable, value in saved.items():
            if value is None:
                environ.pop(variable, None)
            else:
                environ[variable] = value


def same_oracle(recorded: str, address: str) -> bool:
    """Whether a worker's oracle `address` (`ip:port`) reaches the chief that recorded `recorded`.

    A chief bound to every address (0.0.0.0, ::) is reached on any address at its port.
    """
    host, _, port = recorded.rpartition(":")
    if host in WILDCARDS:
        return address.rpartition(":")[2] == port
    return recorded == address
