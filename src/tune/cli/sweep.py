"""`tune [--verbose] [overrides]` (or `python -m tune`): run one sweep with the Hydra config in `tune/conf/`.

Thin entry: compose the config, convert it to typed settings, call `run_sweep`, print the
outcome. `--cfg job` prints the composed config; `--config-dir DIR` adds a folder of your
own configs (e.g. `DIR/experiment/mine.yaml`, then `experiment=mine`); `-m` runs one sweep
per combination of comma-separated values (`-m seed=0,1`; see `tune.cli.jobs`).

Before Hydra reads the command line, a value `~` or `~/...` is expanded to the home folder
(`data.root=~/fruits-360` works unquoted), `--verbose` keeps TensorFlow's start-up lines,
and every key is checked, with the nearest real key suggested (see `tune.cli.argv`).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from tune.cli import jobs
from tune.cli.argv import prepare_command_line
from tune.config.schema import register_schema

register_schema()
RESUME_HINT = "; the sweep's runs are marked KILLED. Run the same command again to resume."


def run_address(uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI's page of a run: the server's own address, or the local `mlflow ui`'s."""
    from tune.tracking.uri import is_server, ui_address

    return ui_address(experiment_id, run_id, uri) if is_server(uri) else ui_address(experiment_id, run_id)


def browse_hint(uri: str, experiment_id: Optional[str] = None, run_id: Optional[str] = None) -> str:
    """How to look at the runs: the server's address, or the `mlflow ui` command; then the run's page."""
    from tune.tracking.uri import is_server

    hint = f"browse: {uri}" if is_server(uri) else f"browse: mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
    if not experiment_id or not run_id:
        return hint
    return f"{hint}\n        then open {run_address(uri, experiment_id, run_id)}"


def _test_split(data) -> str:
    """Where the test images came from: the test folder, or the files carved out of one folder."""
    if data.test_dir is None:
        return f"the test split carved out of {data.root}/{data.train_dir} (data/test_files.txt)"
    return f"{data.root}/{data.test_dir}"


def report(result, settings) -> str:
    """A short summary of a finished sweep for the terminal."""
    from tune.model.base_init import describe
    from tune.search.tuners import describe as describe_values

    done = sum(s == "COMPLETED" for s in result.trial_statuses.values())
    total = len(result.trial_statuses)
    if result.already_finished:
        headline = (
            f"this sweep had already finished ({done} of {total} trials completed); nothing was run. "
            "To search again: change the search, or add tuner.overwrite=true"
        )
    else:
        headline = f"sweep {'resumed and ' if result.resumed else ''}finished: {done} of {total} trials completed"
    tracking, data = settings.tracking, settings.data
    lines = [
        headline,
        f"best {result.objective}: {result.best_score:.4f} ({describe_values(result.best_values)})",
        *_baseline_lines(result),
        f"base weights: {describe(settings.model.weights)}",
        f"test accuracy: {result.test_metrics.get('test_accuracy', math.nan):.4f} on {_test_split(data)}",
        f"registered: models:/{tracking.registered_model_name}/{result.model_version} (alias @{tracking.alias})",
        f"MLflow run: {result.parent_run_id} in experiment '{tracking.experiment_name}'",
        browse_hint(tracking.uri, result.experiment_id, result.parent_run_id),
    ]
    return "\n".join(lines)


def worker_report(result, settings) -> str:
    """A short summary of what a chief/worker search's worker did (see `tune.search.worker`)."""
    done = sum(s == "COMPLETED" for s in result.trial_statuses.values())
    tracking = settings.tracking
    lines = [
        f"worker {result.tuner_id} finished: the chief at {result.oracle} has no trial left; "
        f"{done} of the {len(result.trial_statuses)} trial(s) it ran completed",
        f"MLflow run: {result.parent_run_id} in experiment '{tracking.experiment_name}' (the chief's sweep run)",
        browse_hint(tracking.uri, result.experiment_id, result.parent_run_id),
    ]
    return "\n".join(lines)


def _baseline_lines(result) -> list:
    """The majority-class baseline beside the best trial's val_accuracy, and the warning when it is not beaten."""
    if result.baseline_accuracy is None or result.best_val_accuracy is None:
        return []
    lines = [
        f"baseline (always the commonest class): val_accuracy {result.baseline_accuracy:.4f}; "
        f"best trial's val_accuracy {result.best_val_accuracy:.4f}"
    ]
    return lines + ([f"WARNING: {result.baseline_warning}"] if result.below_baseline else [])


@hydra.main(version_base="1.3", config_path="pkg://tune.conf", config_name="config")
def sweep(cfg: DictConfig) -> float:
    """Run the sweep (one job of a multirun); return the best objective value (for Hydra's sweepers)."""

    def task():
        from tune.config.settings import load_settings
        from tune.search.sweep import run_sweep

        hydra_cfg = HydraConfig.get()
        settings = load_settings(cfg, Path(hydra_cfg.runtime.cwd), list(hydra_cfg.overrides.task))
        print(settings.store().line(), file=sys.stderr, flush=True)
        return settings, run_sweep(settings)

    done = jobs.run_job(task, RESUME_HINT)
    if done is None:  # a failed job of a multirun; the next one runs
        return math.nan
    settings, result = done
    print(result.summary)
    print(worker_report(result, settings) if hasattr(result, "tuner_id") else report(result, settings))
    return result.best_score


def main() -> None:
    """`tune`: the command line checked (`tune.cli.argv`), then the sweep or each job of a multirun.

    Exits:
        2 on an error of ours (one line), 130 on an interrupt; after a multirun, 2 (or 1 for
        a bug) if any job failed.
    """
    prepare_command_line()
    sweep()
    jobs.finish()
