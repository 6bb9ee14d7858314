"""Does memory stay bounded over many trials? One tiny sweep in this process, then its curve.

    python -m tune.bench_memory [--trials 20] [--root DIR]

Runs the `debug=tiny` preset (generated shapes, 32x32, VGG16 with random weights, one head
epoch and one fine-tuning epoch per trial) with `--trials` trials, its MLflow store and
outputs under `--root` (a temporary folder by default). Each trial's child run holds
`process_rss_mb`, the resident size after the trial (see `tune.resources`); this reads them
back, prints one row per trial, and compares the last trial with the second (the first
warm-up trial pays for one-off allocations). Exit status 1 when the last exceeds the second
by more than `RELATIVE` of it or `ABSOLUTE_MB`, whichever is larger.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from tune.config.settings import Settings, compose_settings

RELATIVE = 0.10  # allowed growth from the reference trial to the last, as a fraction
ABSOLUTE_MB = 300.0  # ... or this many MB, whichever is larger
REFERENCE_TRIAL = 2  # 1-based: the first trial after the warm-up one


@dataclass
class Verdict:
    """The last trial's resident size against the reference trial's, in MB."""

    reference_mb: float
    last_mb: float
    allowed_mb: float  # the largest growth within the bound

    @property
    def growth_mb(self) -> float:
        """MB gained from the reference trial to the last (negative when it shrank)."""
        return self.last_mb - self.reference_mb

    @property
    def ok(self) -> bool:
        """Whether the growth is within the bound."""
        return self.growth_mb <= self.allowed_mb


def tiny_settings(root: Path, trials: int, overrides: Sequence[str] = ()) -> Settings:
    """`Settings` of the `debug=tiny` sweep with `trials` trials and every path under `root`."""
    return compose_settings(root, ["debug=tiny", f"tuner.options.max_trials={trials}", *overrides])


def trial_rss(root: Path, trials: int, overrides: Sequence[str] = ()) -> List[float]:
    """Run the tiny sweep in this process; return `process_rss_mb` of trials 1..N, in MB."""
    from mlflow.tracking import MlflowClient  # here, so that --help needs no TensorFlow

    from tune.search.sweep import run_sweep

    settings = tiny_settings(root, trials, overrides)
    parent = run_sweep(settings).parent_run_id
    client = MlflowClient(settings.tracking.uri)
    experiment = client.get_run(parent).info.experiment_id
    runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    runs = sorted(runs, key=lambda run: int(run.data.tags["tune.trial_id"]))
    return [run.data.metrics["process_rss_mb"] for run in runs]


def judge(rss: Sequence[float]) -> Verdict:
    """Compare the last trial with trial `REFERENCE_TRIAL`; needs at least that many trials."""
    if len(rss) < REFERENCE_TRIAL:
        raise ValueError(f"expected at least {REFERENCE_TRIAL} trials, got {len(rss)}")
    reference = rss[REFERENCE_TRIAL - 1]
    return Verdict(reference, rss[-1], max(RELATIVE * reference, ABSOLUTE_MB))


def report(rss: Sequence[float], verdict: Verdict) -> str:
    """A table of trial number (1-based) and RSS, then the comparison line."""
    lines = ["trial  RSS MB", *(f"{k:5d}  {mb:8.1f}" for k, mb in enumerate(rss, start=1))]
    change = f"{verdict.growth_mb:+.1f} MB ({verdict.growth_mb / verdict.reference_mb:+.1%})"
    bound = f"bound +{verdict.allowed_mb:.1f} MB: {'ok' if verdict.ok else 'EXCEEDED'}"
    lines.append(f"trial {len(rss)} vs trial {REFERENCE_TRIAL}: {change}, {bound}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the arguments, run the sweep, print the table; 0 within the bound, 1 beyond it."""
    parser = argparse.ArgumentParser(prog="python -m tune.bench_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help=f"trials to run, at least {REFERENCE_TRIAL}")
    parser.add_argument("--root", type=Path, help="store and outputs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.trials < REFERENCE_TRIAL:
        parser.error(f"--trials: expected at least {REFERENCE_TRIAL}, got {args.trials}")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("tune").setLevel(logging.INFO)  # one line per trial
    with tempfile.TemporaryDirectory(prefix="tune-bench-") as scratch:
        rss = trial_rss((args.root or Path(scratch)).resolve(), args.trials)
    verdict = judge(rss)
    print(report(rss, verdict))
    return 0 if verdict.ok else 1
