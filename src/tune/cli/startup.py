"""Before TensorFlow is first imported: keep its start-up lines off the console.

Loading TensorFlow prints a few lines on stderr, some from C++ before absl's logging starts,
so `TF_CPP_MIN_LOG_LEVEL` alone does not silence them:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_driver.cc:...] failed call to cuInit: ...

`quiet_tensorflow` imports TensorFlow and lists its devices (where CUDA starts) with file
descriptor 2 sent to a temporary file, then writes every other line back. `--verbose` on
the command line, or `TUNE_VERBOSE=1` in the environment, keeps them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator, Mapping, Sequence

VERBOSE_FLAG = "--verbose"
VERBOSE_ENV = "TUNE_VERBOSE"
# Substrings of the start-up lines dropped; every other line printed meanwhile is kept.
STARTUP_LINES = (
    "absl::InitializeLog()",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "cpu_feature_guard",
    "rebuild TensorFlow with the appropriate compiler flags",
)


def wants_verbose(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether the command keeps TensorFlow's start-up lines: `--verbose` in `argv` or `TUNE_VERBOSE=1`."""
    return VERBOSE_FLAG in argv or environ.get(VERBOSE_ENV, "") == "1"


def without_startup_lines(text: str) -> str:
    """`text` less the lines holding any of `STARTUP_LINES`, other lines as they were."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not any(part in line for part in STARTUP_LINES))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file meanwhile; then write it back, start-up lines left out."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            os.write(2, without_startup_lines(held.read().decode(errors="replace")).encode())


def quiet_tensorflow() -> None:
    """Import TensorFlow and start its devices without their start-up lines (once; no-op if imported).

    GPU memory grows on demand (`TF_FORCE_GPU_ALLOW_GROWTH`, unless already set), so several
    processes (workers of one search, concurrent sweeps) can share a card.
    """
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # read when TensorFlow opens the GPUs
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING lines after start-up
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
