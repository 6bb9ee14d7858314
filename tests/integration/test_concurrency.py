"""Processes at the same moment: sweeps on one fresh SQLite store, openers of one store, fillers of one cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

import tune
from conftest import TINY, make_settings
from tune.data.scan import list_folder, scan_folder

pytestmark = pytest.mark.slow

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# Two searches that differ only in their learning-rate range (same data, same store).
LEARNING_RATES = {"low": (1e-3, 3e-3), "high": (1e-2, 3e-2)}


def _env() -> dict:
    """The environment of a child process, importing the same `tune` as this test."""
    src = str(Path(tune.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _launch(root: Path, name: str) -> subprocess.Popen:
    """`python -m tune` on the tiny sweep under `root`, with its own Hydra run folder."""
    low, high = LEARNING_RATES[name]
    overrides = [
        *(*TINY, f"paths.root_dir={root}", f"hydra.run.dir={root}/experiments/{name}"),
        *(f"search.learning_rate.min={low}", f"search.learning_rate.max={high}"),
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "tune", *overrides],
        cwd=root,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory):
    """Start both sweeps back to back, wait for both; the store does not exist before."""
    root = tmp_path_factory.mktemp("concurrent")
    settings = make_settings(root, TINY)
    assert not Path(settings.tracking.uri.removeprefix("sqlite:///")).exists()
    processes = [_launch(root, name) for name in LEARNING_RATES]
    outputs = [process.communicate(timeout=900)[0] for process in processes]
    client = MlflowClient(settings.tracking.uri)
    experiment = client.get_experiment_by_name(settings.tracking.experiment_name)
    return dict(settings=settings, processes=processes, outputs=outputs, client=client, experiment=experiment)


def _runs(sweep, role: str):
    return sweep["client"].search_runs([sweep["experiment"].experiment_id], f"tags.`tune.role` = '{role}'")


def test_both_sweeps_exit_0(two_sweeps):
    for process, output in zip(two_sweeps["processes"], two_sweeps["outputs"]):
        assert process.returncode == 0, output[-3000:]


def test_two_finished_parent_runs_in_one_experiment(two_sweeps):
    parents = _runs(two_sweeps, "sweep")
    assert len(parents) == 2
    assert {run.info.status for run in parents} == {"FINISHED"}
    ranges = {run.data.params["search.learning_rate.min"] for run in parents}
    assert ranges == {str(low) for low, _ in LEARNING_RATES.values()}


def test_every_trial_finished_with_one_point_per_epoch(two_sweeps):
    client, trials = two_sweeps["client"], two_sweeps["settings"].tuner.options["max_trials"]
    for parent in _runs(two_sweeps, "sweep"):
        own = f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        children = client.search_runs([two_sweeps["experiment"].experiment_id], own)
        assert len(children) == trials
        for run in children:
            assert run.info.status == "FINISHED"
            epochs = int(run.data.metrics["epochs_head"] + run.data.metrics["epochs_fine_tune"])
            for key in METRICS:
                steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
                assert steps == list(range(epochs)), (key, run.info.run_name)


def test_two_model_versions_registered(two_sweeps):
    name = two_sweeps["settings"].tracking.registered_model_name
    versions = two_sweeps["client"].search_model_versions(f"name = '{name}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    parents = {run.info.run_id for run in _runs(two_sweeps, "sweep")}
    assert {v.run_id for v in versions} == parents


OPEN_STORE = """
import sys, time
from tune.tracking.store import open_store
uri, artifacts, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start_at - time.time()))
print(open_store(uri, "race", artifacts))
"""


def test_processes_opening_a_fresh_store_at_one_instant_share_one_experiment(tmp_path):
    uri, start_at = f"sqlite:///{tmp_path}/mlruns/mlflow.db", time.time() + 20  # after the imports
    command = [sys.executable, "-c", OPEN_STORE, uri, str(tmp_path / "artifacts"), str(start_at)]
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    processes = [subprocess.Popen(command, env=_env(), **pipes) for _ in range(4)]
    results = [process.communicate(timeout=300) for process in processes]
    for process, (_, err) in zip(processes, results):
        assert process.returncode == 0, err[-3000:]
    assert len({out.strip().splitlines()[-1] for out, _ in results}) == 1
    assert sorted(e.name for e in MlflowClient(uri).search_experiments()) == ["Default", "race"]


FILL = """
import sys
from pathlib import Path
from tune.data.cache import cache_key, decoded_images
from tune.data.scan import list_folder
listing = list_folder(Path(sys.argv[1]), "train")
files = [e[0] for e in listing.entries]
decoded_images(listing.folder, files, cache_key(listing.entries, (16, 16), 10**6), (16, 16), 10**6, Path(sys.argv[2]))
"""


def test_two_processes_filling_the_same_cache_leave_one_complete_entry(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("Apple Red 1", "Pear (Kaiser)"):
        for i in range(150):
            path = tmp_path / "many" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 32), tuple(int(v) for v in rng.integers(0, 256, 3))).save(path)
    cache = tmp_path / "cache"
    runs = [subprocess.Popen([sys.executable, "-c", FILL, tmp_path / "many", cache], env=_env()) for _ in range(2)]
    assert [run.wait(timeout=120) for run in runs] == [0, 0]
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".lock", ".npy"]  # no temporary files left
    listing = list_folder(tmp_path / "many", "train")
    cached = scan_folder(listing, (16, 16), cache, max_pixels=10**6)
    fresh = scan_folder(listing, (16, 16), None, max_pixels=10**6)
    np.testing.assert_array_equal(cached.images, fresh.images)
