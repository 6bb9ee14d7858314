"""`pip install .` (not editable): the installed package runs from an empty folder, configs and all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tune
from conftest import TINY

pytestmark = pytest.mark.slow
REPO = Path(tune.__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project built as a wheel and installed (no dependencies) into a folder of its own.

    It is built from a copy of what the build reads, so no build folder lands in the work tree.
    """
    source, target = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("site")
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (target / "tune" / "conf" / "debug" / "tiny.yaml").is_file()  # configs are package data
    return target


def run_installed(target: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    """`argv` with the installed copy first on the path, nothing of the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_the_installed_package_sweeps_promotes_and_predicts_from_an_empty_folder(installed, tmp_path):
    where = run_installed(installed, tmp_path, sys.executable, "-c", "import tune; print(tune.__file__)")
    assert where.stdout.strip() == str(installed / "tune" / "__init__.py")
    swept = run_installed(installed, tmp_path, sys.executable, "-m", "tune", *TINY)
    assert swept.returncode == 0, swept.stderr[-3000:]
    assert "registered: models:/shapes-classifier/1 (alias @challenger)" in swept.stdout
    promoted = run_installed(installed, tmp_path, str(installed / "bin" / "tune-promote"), *TINY)
    assert promoted.returncode == 0 and "decision: promoted" in promoted.stdout, promoted.stderr[-3000:]
    image = next((tmp_path / "experiments" / "datasets").glob("*/Test/red circle/*.png"))
    predicted = run_installed(installed, tmp_path, str(installed / "bin" / "tune-predict"), str(image))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert predicted.stdout.strip().splitlines()[-1].startswith(f"{image}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments", "mlruns"]
