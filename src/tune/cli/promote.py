"""`tune-promote [overrides]` (or `python -m tune.promote`): champion or challenger, on the test folder.

Uses the sweep's own config tree, so the store and the registered model name follow the same
overrides (`python -m tune.promote experiment=quickstart promote.margin=0.01`); the test images
are those the challenger's sweep recorded, unless `data.*` keys on this command line say otherwise.
The command line is read as `tune`'s: `~` values expanded, keys checked (see `tune.cli.argv`).
See `tune.tracking.promotion` for the rule.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from tune.cli import jobs
from tune.cli.argv import prepare_command_line
from tune.config.schema import register_schema

register_schema()


def report(decision) -> str:
    """The two versions side by side and the decision, for the terminal."""
    from tune.tracking.registry import CHAMPION

    rows: List[tuple] = [("", "version", "run id", "test_accuracy", "test_loss")]
    for role, ev in (("challenger", decision.challenger), ("champion", decision.champion)):
        if ev is None:
            rows.append((role, "-", "-", "-", "-"))
        else:
            rows.append((role, f"v{ev.version}", ev.run_id, f"{ev.test_accuracy:.4f}", f"{ev.test_loss:.4f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    now = f"@{CHAMPION} -> v{decision.challenger.version}" if decision.promoted else f"@{CHAMPION} unchanged"
    head = [f"registered model: {decision.model_name}", f"test images: {decision.test_images}"]
    return "\n".join([*head, *lines, f"decision: {decision.reason} ({now})"])


@hydra.main(version_base="1.3", config_path="pkg://tune.conf", config_name="config")
def promote_command(cfg: DictConfig) -> None:
    """Compose the config, run `promote`, print the table."""

    def task():
        from tune.config.checks import check_settings
        from tune.config.settings import load_settings
        from tune.tracking.evaluation_data import given_data_keys
        from tune.tracking.promotion import promote

        hydra_cfg = HydraConfig.get()
        settings = load_settings(cfg, Path(hydra_cfg.runtime.cwd), list(hydra_cfg.overrides.task))
        print(settings.store().line(), file=sys.stderr, flush=True)
        check_settings(settings)
        given = given_data_keys(hydra_cfg.overrides.task)
        return promote(settings.data, settings.tracking, settings.promote, given)

    decision = jobs.run_job(task)
    if decision is not None:
        print(report(decision))


def main() -> None:
    """`tune-promote`: the command line checked as `tune`'s (`~` values, keys; see `tune.cli.argv`)."""
    prepare_command_line()
    promote_command()
    jobs.finish()
