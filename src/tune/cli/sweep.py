"""`tune [overrides]` (or `python -m tune`): run one sweep with the Hydra config in `tune/conf/`.

Thin entry: compose the config, convert it to typed settings, call `run_sweep`, print the
outcome. `--cfg job` prints the composed config; `--config-dir DIR` adds a folder of your
own configs (e.g. `DIR/experiment/mine.yaml`, then `experiment=mine`).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from tune.cli.prologue import run_command
from tune.config.schema import register_schema

register_schema()
RESUME_HINT = "; the sweep's runs are marked KILLED. Run the same command again to resume."


def browse_hint(uri: str) -> str:
    """How to look at the runs: the server's address, or the `mlflow ui` command for a local store."""
    from tune.tracking.uri import is_server

    if is_server(uri):
        return f"browse: {uri}"
    return f"browse: mlflow ui --backend-store-uri {uri} --host 127.0.0.1"


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
    return "\n".join(
        [
            headline,
            f"best {result.objective}: {result.best_score:.4f} ({describe_values(result.best_values)})",
            f"base weights: {describe(settings.model.weights)}",
            f"test accuracy: {result.test_metrics.get('test_accuracy', math.nan):.4f} on {_test_split(data)}",
            f"registered: models:/{tracking.registered_model_name}/{result.model_version} (alias @{tracking.alias})",
            f"MLflow run: {result.parent_run_id} in experiment '{tracking.experiment_name}'",
            browse_hint(tracking.uri),
        ]
    )


@hydra.main(version_base="1.3", config_path="pkg://tune.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Run the sweep; return the best objective value (for Hydra's sweepers)."""

    def task():
        from tune.config.settings import load_settings
        from tune.search.sweep import run_sweep

        hydra_cfg = HydraConfig.get()
        settings = load_settings(cfg, Path(hydra_cfg.runtime.cwd), list(hydra_cfg.overrides.task))
        print(settings.store().line(), file=sys.stderr, flush=True)
        return settings, run_sweep(settings)

    settings, result = run_command(task, RESUME_HINT)
    print(result.summary)
    print(report(result, settings))
    return result.best_score
