"""`python -m tune [overrides]`: run one sweep with the Hydra config in `conf/`.

Thin entry: compose the config, convert it to typed settings, call `run_sweep`, print the
outcome. Errors of ours print as one line naming the key or file, with exit status 2.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from tune.errors import TuneError  # noqa: E402


def browse_hint(uri: str) -> str:
    """How to look at the runs: the server's address, or the `mlflow ui` command for a file store."""
    if uri.startswith(("http://", "https://")):
        return f"browse: {uri}"
    return f"browse: mlflow ui --backend-store-uri {uri} --host 127.0.0.1"


def report(result, settings) -> str:
    """A short summary of a finished sweep for the terminal."""
    from tune.resume import base_init

    best = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best_values.items())
    done = sum(s == "COMPLETED" for s in result.trial_statuses.values())
    if result.already_finished:
        headline = (
            f"this sweep had already finished ({done} of {len(result.trial_statuses)} trials completed); "
            "nothing was run. To search again: change the search, or add tuner.overwrite=true"
        )
    else:
        headline = f"sweep {'resumed and ' if result.resumed else ''}finished: {done} of {len(result.trial_statuses)} trials completed"
    return "\n".join(
        [
            headline,
            f"best {result.objective}: {result.best_score:.4f} ({best})",
            f"base weights: {base_init(settings.model.weights)}",
            f"test accuracy: {result.test_metrics.get('test_accuracy', float('nan')):.4f}"
            f" on {settings.data.root}/{settings.data.test_dir}",
            f"registered: models:/{settings.tracking.registered_model_name}/{result.model_version}"
            f" (alias @{settings.tracking.alias})",
            f"MLflow run: {result.parent_run_id} in experiment '{settings.tracking.experiment_name}'",
            browse_hint(settings.tracking.uri),
        ]
    )


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Run the sweep; return the best objective value (for Hydra sweepers)."""
    from tune.config import load_settings
    from tune.sweep import run_sweep

    signal.signal(signal.SIGTERM, _interrupt)  # `kill` ends the runs KILLED, as Ctrl-C does
    hydra_cfg = HydraConfig.get()
    try:
        settings = load_settings(cfg, Path(hydra_cfg.runtime.cwd), list(hydra_cfg.overrides.task))
        result = run_sweep(settings)
    except TuneError as err:
        print(f"tune: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("tune: interrupted; the sweep's runs are marked KILLED. Run the same command again to resume.", file=sys.stderr)
        sys.exit(130)
    print(result.summary)
    print(report(result, settings))
    return result.best_score


if __name__ == "__main__":
    main()
