"""Which code ran a sweep: MLflow's `mlflow.source.git.commit` tag, when there is a git work tree."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, Optional


def git_commit(folder: Path) -> Optional[str]:
    """The commit checked out in `folder`, or None outside a git work tree (an installed package)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def source_tags() -> Dict[str, str]:
    """`{"mlflow.source.git.commit": <commit>}` of the `tune` code that runs, or {}."""
    commit = git_commit(Path(__file__).parent)
    return {"mlflow.source.git.commit": commit} if commit else {}
