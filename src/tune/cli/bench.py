"""The activation cache, side by side: one sweep run twice, each arm in a fresh folder and process.

    python -m tune.bench --preset fruits4-4x3 [--keep DIR] [extra overrides ...]

Each preset runs the same sweep (same seed, space, trials and epochs) in two arms that
differ in one setting: `training.activation_cache` off then on, or (`fruits4-bf16`) the
cache at float32 then bfloat16. Each arm is `python -m tune ...` in its own empty folder,
so it pays for everything a user's run pays for: the scan, filling the cache, the trials,
the test evaluation and the registration. Printed, one figure a line: each arm's wall
time, their ratio, each arm's search time (its trials, plus filling the cache) and their
ratio, best validation and test accuracy, the cache's filling speed against
the base's raw forward speed on random tensors at the same batch size (measured before and
after the arms: on a shared host the CPU's speed drifts), and each arm's peak
resident memory (the child process's `ru_maxrss`). A line says whether both arms drew
the same trials (the parameters of every trial run, by trial id), as the same seed should.

The fruits4 presets read `../shared/data/fruits-360-4class` from the folder you launch
from (as `data=fruits4` does); `quick` generates its images.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

# VGG16 at 100x100 from random weights on the 4-class Fruits-360 sample; no augmentation.
FRUITS4 = [
    "data=fruits4",
    "data.validation_split=random",  # as measured before data=fruits4 held out blocks
    "model=vgg16",
    "model.weights=null",
    "model.head.pooling=flatten",
    "training.augment.enabled=false",
    "training.patience=5",
    "search.momentum.value=0.9",
    "search.learning_rate.min=3e-4",
    "search.learning_rate.max=3e-2",
]
HEAD_ONLY = ["search.thawed_layers.value=0", "training.fine_tune_epochs=0"]
FOUR_BY_THREE = [*FRUITS4, *HEAD_ONLY, "tuner.options.max_trials=4", "training.head_epochs=3"]
CACHE_ARMS = {"off": ["training.activation_cache=off"], "on": ["training.activation_cache=on"]}

PRESETS: Dict[str, dict] = {
    "quick": dict(
        about="generated shapes at 32x32, VGG16 random, 2 trials x (2 head + 1 fine-tune epochs), thawed 0..2, "
        "no augmentation",
        overrides=[
            "debug=tiny",
            "training.augment.enabled=false",
            "training.head_epochs=2",
            "search.thawed_layers.min=0",
            "search.thawed_layers.max=2",
            "data.synthetic.train_per_class=40",
        ],
        arms=CACHE_ARMS,
    ),
    "fruits4-4x3": dict(
        about="fruits-360-4class, VGG16 random at 100x100, 4 trials x 3 head epochs, nothing thawed, no augmentation",
        overrides=FOUR_BY_THREE,
        arms=CACHE_ARMS,
    ),
    "fruits4-10x5": dict(
        about="fruits-360-4class, VGG16 random at 100x100, 10 trials x 5 head epochs, nothing thawed, no augmentation",
        overrides=[*FRUITS4, *HEAD_ONLY, "tuner.options.max_trials=10", "training.head_epochs=5"],
        arms=CACHE_ARMS,
    ),
    "fruits4-thaw": dict(
        about="fruits-360-4class, VGG16 random at 100x100, 4 trials x (2 head + 1 fine-tune epochs), thawed 0..2",
        overrides=[
            *FRUITS4,
            "tuner.options.max_trials=4",
            "training.head_epochs=2",
            "training.fine_tune_epochs=1",
            "search.thawed_layers.min=0",
            "search.thawed_layers.max=2",
        ],
        arms=CACHE_ARMS,
    ),
    "fruits4-augment": dict(
        about="fruits-360-4class, VGG16 random at 100x100, 4 trials x 3 head epochs, augmentation on (2 views)",
        overrides=[*FOUR_BY_THREE, "training.augment.enabled=true", "training.augment.views=2"],
        arms=CACHE_ARMS,
    ),
    "fruits4-bf16": dict(
        about="fruits-360-4class, VGG16 random at 100x100, 4 trials x 3 head epochs, cache on: float32 vs bfloat16",
        overrides=FOUR_BY_THREE,
        arms={
            "float32": ["training.activation_cache=on", "training.precision=float32"],
            "bfloat16": ["training.activation_cache=on", "training.precision=bfloat16"],
        },
    ),
}


@dataclass
class Arm:
    """One arm's measurements."""

    name: str
    seconds: float
    peak_rss_mb: float
    exit_code: int
    metrics: Dict[str, float] = field(default_factory=dict)
    precision: str = "float32"
    draws: List[Dict[str, str]] = field(default_factory=list)  # each trial's parameters, by trial id


def run_arm(name: str, overrides: Sequence[str], folder: Path, log: Path) -> Arm:
    """`python -m tune <overrides>` in `folder`; wall time, peak RSS and the sweep run's metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tune", *overrides]
    print(f"{name}: {' '.join(command[1:])}  (log: {log})", flush=True)
    started = time.monotonic()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    return Arm(
        name,
        seconds,
        usage.ru_maxrss / 1024,
        os.waitstatus_to_exitcode(status),
        sweep_metrics(folder),
        _precision(overrides),
        trial_draws(folder),
    )


def _precision(overrides: Sequence[str]) -> str:
    """The `training.precision` the overrides set (float32 when none does)."""
    return next((o.split("=", 1)[1] for o in overrides if o.startswith("training.precision=")), "float32")


def sweep_metrics(folder: Path) -> Dict[str, float]:
    """The metrics of the sweep run recorded under `folder/mlruns`."""
    from mlflow.tracking import MlflowClient

    database = folder / "mlruns" / "mlflow.db"
    if not database.exists():
        return {}
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id], "tags.`tune.role` = 'sweep'")
    ]
    return dict(runs[0].data.metrics) if runs else {}


def trial_draws(folder: Path) -> List[Dict[str, str]]:
    """The parameters of each trial run recorded under `folder/mlruns`, in trial-id order."""
    from mlflow.tracking import MlflowClient

    database = folder / "mlruns" / "mlflow.db"
    if not database.exists():
        return []
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id], "tags.`tune.role` = 'trial'")
    ]
    return [dict(run.data.params) for run in sorted(runs, key=lambda run: run.data.tags.get("tune.trial_id", ""))]


def raw_forward(base_name: str, size: Sequence[int], precision: str, batch: int, batches: int = 6) -> float:
    """Images/s of the base's forward pass (with its preprocessing) on random tensors, after one warm-up batch."""
    import keras
    import numpy as np

    from tune.model.backbones import build_base
    from tune.model.classifier import preprocessing
    from tune.model.recipe import precision as policy

    with policy(precision):
        inputs = keras.Input((*size, 3))
        model = keras.Model(inputs, build_base(base_name, tuple(size), None)(preprocessing(base_name, size)(inputs)))
    x = np.random.default_rng(0).uniform(0, 255, (batch, *size, 3)).astype("float32")
    model.predict_on_batch(x)
    started = time.monotonic()
    for _ in range(batches):
        model.predict_on_batch(x)
    return batch * batches / (time.monotonic() - started)


def search_seconds(arm: Arm) -> Optional[float]:
    """The arm's trials plus its cache filling, in s (None when the run recorded no search time).

    The rest of a run, the same in both arms, is start-up, the scan, the random base's
    scaling, the test evaluation and the registration.
    """
    if "search_seconds" not in arm.metrics:
        return None
    return arm.metrics["search_seconds"] + arm.metrics.get("activation_fill_seconds", 0.0)


def report(preset: str, arms: List[Arm], forward: Dict[str, Tuple[float, float]], objective: str) -> List[str]:
    """The printed figures, one a line; `forward`: precision -> raw forward images/s (before, after the arms)."""
    first, second = arms
    lines = [f"preset: {preset}: {PRESETS[preset]['about']}"]
    for arm in arms:
        lines.append(f"{arm.name}: wall time {arm.seconds:.1f} s (exit code {arm.exit_code})")
    lines.append(f"speed-up ({first.name} / {second.name}): {first.seconds / second.seconds:.2f}x")
    searches = [search_seconds(arm) for arm in arms]
    if None not in searches:
        for arm, seconds in zip(arms, searches):
            lines.append(f"{arm.name}: search {seconds:.1f} s (the trials, and filling the cache where it was filled)")
        lines.append(f"search speed-up ({first.name} / {second.name}): {searches[0] / searches[1]:.2f}x")
    if first.draws == second.draws:
        lines.append(f"trials drawn: the same {len(first.draws)} in both arms")
    else:
        lines.append(f"trials drawn: not the same ({len(first.draws)} and {len(second.draws)}; compare the arms' logs)")
    for arm in arms:
        best = arm.metrics.get(f"best_{objective}")
        lines.append(f"{arm.name}: best {objective} {best:.4f}" if best is not None else f"{arm.name}: no best trial")
    for arm in arms:
        if "test_accuracy" in arm.metrics:
            lines.append(f"{arm.name}: test accuracy {arm.metrics['test_accuracy']:.4f}")
    for arm in arms:
        fill = arm.metrics.get("activation_fill_images_per_second")
        if fill is not None:
            before, after = forward[arm.precision]
            lines.append(
                f"{arm.name}: cache filling {fill:.1f} images/s; the base's raw forward ({arm.precision}) "
                f"{before:.1f} images/s before the arms and {after:.1f} after ({fill / before:.0%} and "
                f"{fill / after:.0%})"
            )
        elif "activation_cache_reused" in arm.metrics:
            lines.append(f"{arm.name}: cache reused ({arm.metrics['activation_cache_reused']:.0f} entries)")
    for arm in arms:
        lines.append(f"{arm.name}: peak RSS {arm.peak_rss_mb:.0f} MB")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tune.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument(
        "--keep",
        type=Path,
        help="run the arms in DIR/<arm> and keep them (default: a temporary folder)",
    )
    parser.add_argument("overrides", nargs="*", help="more config overrides for both arms")
    args = parser.parse_args(argv)

    from tune.config.settings import compose_settings
    from tune.model.backbones import resolve_image_size
    from tune.model.inference import BATCH
    from tune.model.space import base_names

    preset = PRESETS[args.preset]
    overrides = [*preset["overrides"], *args.overrides]
    settings = compose_settings(Path.cwd(), overrides)
    if settings.data.synthetic is None:
        overrides.append(f"data.root={Path(settings.data.root).resolve()}")  # the arms run elsewhere
    base = base_names(settings.search.base_model)[0]
    size = resolve_image_size(settings.data.image_size, base)
    precisions = sorted({_precision(extra) for extra in preset["arms"].values()})
    before = {p: raw_forward(base, size, p, BATCH) for p in precisions}  # the host's speed can drift
    with contextlib.nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary).resolve()
        root.mkdir(parents=True, exist_ok=True)
        arms = [
            run_arm(name, [*overrides, *extra], root / name, root / f"{name}.log")
            for name, extra in preset["arms"].items()
        ]
    forward = {p: (before[p], raw_forward(base, size, p, BATCH)) for p in precisions}
    for line in report(args.preset, arms, forward, settings.tuner.objective):
        print(line, flush=True)
    return max(arm.exit_code for arm in arms)
