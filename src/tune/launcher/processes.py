"""The chief's and the workers' specs: the same `python -m tune` command, each one's environment and log folder.

`tune.launcher.resources` places them (tuner ids, oracle, GPUs, threads); each also gets
its own Hydra folder, `experiments/<experiment>/launch-<time>/<name>/`, since processes
started in the same second would otherwise share `experiments/<experiment>/<time>/`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Mapping, Sequence

from tune.launcher.resources import CHIEF, cpu_count, free_port, process_envs, visible_gpus
from tune.launcher.supervisor import ChildSpec, Role


def process_specs(
    workers: int, command: Sequence[str], url: str, root: Path, environ: Mapping[str, str]
) -> List[ChildSpec]:
    """The chief's and the workers' specs: `command` plus each one's Hydra folder, and each one's environment."""
    envs = process_envs(workers, free_port(), url, visible_gpus(environ), cpu_count(), environ)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    specs = []
    for name, env in envs.items():
        role = Role.MAIN if name == CHIEF else Role.WORKER
        specs.append(ChildSpec(name, [*command, *_run_dir(command, stamp, name)], env, role, str(root)))
    return specs


def placement(specs: Sequence[ChildSpec]) -> str:
    """One line: the oracle's address and each process's device, e.g. `oracle at 127.0.0.1:4000; chief: 2 threads`."""
    env = specs[0].env
    devices = [f"{spec.name}: {_device(spec.env)}" for spec in specs]
    return f"oracle at {env['KERASTUNER_ORACLE_IP']}:{env['KERASTUNER_ORACLE_PORT']}; " + ", ".join(devices)


def _device(env: Mapping[str, str]) -> str:
    if env.get("CUDA_VISIBLE_DEVICES"):
        return f"GPU {env['CUDA_VISIBLE_DEVICES']}"
    return f"{env.get('TF_NUM_INTRAOP_THREADS', 'all')} threads"


def _run_dir(command: Sequence[str], stamp: str, name: str) -> List[str]:
    """`hydra.run.dir=...` for one process, so processes started in the same second keep separate logs."""
    if any(arg.startswith("hydra.run.dir=") for arg in command):
        return []
    return [f"hydra.run.dir=${{paths.root_dir}}/experiments/${{tracking.experiment_name}}/launch-{stamp}/{name}"]
