"""What the data scan found, on the sweep's run and in the log: image counts and files left out.

Before the first trial the console and the log show a summary (`data_summary`):

    data: 3 classes: blue triangle, green square, red circle
    images: 29 train, 7 validation, 12 test; 0 files skipped
    duplicates: 0 within split, 1 across splits
    baseline: always guessing the commonest class scores 0.333 on the validation split

sweep run   metrics   train_images, validation_images, test_images, skipped_files,
                      baseline_val_accuracy (always guessing the commonest class)
            artifact  skipped_files.csv: split, path, kind (skipped | ignored), reason
"""

from __future__ import annotations

import logging
from typing import Dict, List, Mapping, Optional, Sequence

from tune.data.scan import Skipped
from tune.reports.tables import write_csv
from tune.tracking.recorder import SweepRecorder

log = logging.getLogger("tune.data")
SHOWN = 10  # skipped files named in the log; the CSV lists them all
CLASSES_SHOWN = 5  # class names in the summary


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


def data_summary(
    class_names: Sequence[str],
    counts: Mapping[str, int],
    skipped_files: int,
    baseline: float,
    duplicates: Optional[Mapping[str, int]] = None,
) -> List[str]:
    """The data a sweep searches, in a few lines for the console and the log (see the module's example).

    Args:
        class_names: the classes, sorted.
        counts: usable images of each split, "train", "validation" and "test".
        skipped_files: files left out because they cannot be used.
        baseline: validation accuracy of always answering the commonest training class, in [0, 1].
        duplicates: counts of identical images, e.g. {"duplicates_across_splits": 1}; the
            line is left out when None or empty.
    """
    shown = ", ".join(class_names[:CLASSES_SHOWN])
    more = f" and {len(class_names) - CLASSES_SHOWN} more" if len(class_names) > CLASSES_SHOWN else ""
    images = ", ".join(f"{n} {split}" for split, n in counts.items())
    lines = [f"data: {len(class_names)} classes: {shown}{more}", f"images: {images}; {skipped_files} files skipped"]
    if duplicates:
        kinds = (f"{n} {key.removeprefix('duplicates_').replace('_', ' ')}" for key, n in duplicates.items())
        lines.append(f"duplicates: {', '.join(kinds)}")
    lines.append(f"baseline: always guessing the commonest class scores {baseline:.3f} on the validation split")
    return lines


def log_data_summary(data) -> None:
    """Log `data_summary` of a `tune.data.pipeline.SearchData`, one record a line (console and tune.log)."""
    skipped = sum(s.bad for s in data.skipped)
    duplicates = getattr(data, "duplicates", None)
    for line in data_summary(data.class_names, data.counts, skipped, data.baseline_accuracy, duplicates):
        log.info(line)
