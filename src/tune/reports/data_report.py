"""What the data scan found, on the sweep's run and in the log: image counts and files left out.

sweep run   metrics   train_images, validation_images, test_images, skipped_files,
                      baseline_val_accuracy (always guessing the commonest class)
            artifact  skipped_files.csv: split, path, kind (skipped | ignored), reason
"""

from __future__ import annotations

import logging
from typing import Dict, List

from tune.data.scan import Skipped
from tune.reports.tables import write_csv
from tune.tracking.recorder import SweepRecorder

log = logging.getLogger("tune.data")
SHOWN = 10  # skipped files named in the log; the CSV lists them all


def log_data_report(recorder: SweepRecorder, counts: Dict[str, int], skipped: List[Skipped], baseline: float) -> None:
    """Log the image counts, the baseline and the files left out on the sweep's run.

    Files left out because they cannot be used are counted and printed; hidden and system
    files (`.DS_Store`, ...) are only listed in the CSV.

    Args:
        recorder: the sweep's recorder.
        counts: usable images of each split, "train", "validation" and "test".
        skipped: files and folders left out, with reasons.
        baseline: validation accuracy of always answering the commonest training class, in [0, 1].
    """
    bad = [s for s in skipped if s.bad]
    metrics = {f"{split}_images": n for split, n in counts.items()}
    recorder.log_metrics(
        recorder.parent_run_id, {"skipped_files": len(bad), "baseline_val_accuracy": baseline, **metrics}
    )
    if skipped:
        rows = [[s.split, s.path, "skipped" if s.bad else "ignored", s.reason] for s in skipped]
        text = write_csv(["split", "path", "kind", "reason"], rows)
        recorder.client.log_text(recorder.parent_run_id, text, "skipped_files.csv")
    if bad:
        log.warning("skipped %d file(s), listed in skipped_files.csv of run %s:", len(bad), recorder.parent_run_id)
        for s in bad[:SHOWN]:
            log.warning("  %s: %s", s.path, s.reason)
        if len(bad) > SHOWN:
            log.warning("  ... and %d more", len(bad) - SHOWN)
