"""Where each process of a one-machine distributed sweep runs: ports, GPUs, CPU threads, environment.

keras-tuner's distributed mode reads three variables: `KERASTUNER_TUNER_ID` (`chief`, or
`tuner<i>` for worker i), `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` (where the
chief serves the oracle over gRPC). Every process also gets `MLFLOW_TRACKING_URI`.

With GPUs visible each worker gets one (`CUDA_VISIBLE_DEVICES`, round-robin when there are
more workers than GPUs) and the chief the first, which it uses only for the refit after
the search; memory grows on demand (`TF_FORCE_GPU_ALLOW_GROWTH`) so processes sharing a
GPU fit. Without GPUs the CPU's cores are split between the workers, who train at the same
time; the chief, which trains only once they are done, gets them all.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from typing import Dict, List, Mapping, Optional

LOOPBACK = "127.0.0.1"
CHIEF = "chief"
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")  # threads inside one op


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on at `host` now (the OS's pick; free until someone binds it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def worker_id(index: int) -> str:
    """keras-tuner's id of worker `index` (0-based): `tuner0`, `tuner1`, ..."""
    return f"tuner{index}"


def visible_gpus(environ: Mapping[str, str], nvidia_smi: Optional[str] = None) -> List[str]:
    """The GPU ids this process may hand out: `$CUDA_VISIBLE_DEVICES` when set, else `nvidia-smi -L`'s.

    `CUDA_VISIBLE_DEVICES=""` or `-1` means none. Without `nvidia-smi` (or when it fails or
    takes over 10 s), none.

    Args:
        environ: the environment to read.
        nvidia_smi: the `nvidia-smi` executable; None: looked up on `PATH`.
    """
    given = environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        ids = [part.strip() for part in given.split(",") if part.strip()]
        return [] if ids[:1] == ["-1"] else ids
    executable = nvidia_smi or shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        listing = subprocess.run([executable, "-L"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    lines = [line for line in listing.stdout.splitlines() if line.startswith("GPU ")]
    return [str(index) for index in range(len(lines))]


def cpu_count() -> int:
    """The cores this process may run on (its affinity where the OS says; at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def thread_env(threads: int) -> Dict[str, str]:
    """TensorFlow's and OpenMP's thread counts for a process given `threads` cores (at least 1)."""
    threads = max(1, threads)
    env = {name: str(threads) for name in THREAD_VARIABLES}
    env["TF_NUM_INTEROP_THREADS"] = "2" if threads >= 4 else "1"  # ops run side by side
    return env


def process_envs(
    workers: int,
    oracle_port: int,
    tracking_uri: str,
    gpus: List[str],
    cpus: int,
    base: Mapping[str, str],
) -> Dict[str, Dict[str, str]]:
    """The environment of the chief and of each worker, by process name (`chief`, `worker0`, ...).

    Thread counts the user set in `base` are kept.

    Args:
        workers: how many workers (at least 1).
        oracle_port: the port the chief serves the oracle on, at 127.0.0.1.
        tracking_uri: the tracking server's URI, e.g. `http://127.0.0.1:5000`.
        gpus: the GPU ids to hand out (see `visible_gpus`); empty: CPU only.
        cpus: the cores to split between the workers.
        base: the environment every process starts from.
    """
    common = {
        **base,
        "KERASTUNER_ORACLE_IP": LOOPBACK,
        "KERASTUNER_ORACLE_PORT": str(oracle_port),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PYTHONUNBUFFERED": "1",  # lines reach the launcher as they are printed
    }
    envs = {CHIEF: {**common, **_placement(gpus[:1], cpus, base), "KERASTUNER_TUNER_ID": CHIEF}}
    for index in range(workers):
        gpu = [gpus[index % len(gpus)]] if gpus else []
        placement = _placement(gpu, cpus // workers, base)
        envs[f"worker{index}"] = {**common, **placement, "KERASTUNER_TUNER_ID": worker_id(index)}
    return envs


def _placement(gpu: List[str], threads: int, base: Mapping[str, str]) -> Dict[str, str]:
    """One process's device: its GPU (memory on demand), else its CPU thread counts unless set in `base`."""
    if gpu:
        return {
            "CUDA_VISIBLE_DEVICES": gpu[0],
            "TF_FORCE_GPU_ALLOW_GROWTH": base.get("TF_FORCE_GPU_ALLOW_GROWTH", "true"),
        }
    return {name: value for name, value in thread_env(threads).items() if name not in base}
