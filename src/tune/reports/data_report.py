"""What the data scan and split found, on the sweep's run and in the log.

sweep run   metrics   train_images, validation_images, test_images, skipped_files,
                      baseline_val_accuracy (always guessing the commonest class),
                      duplicates_within_split, duplicates_across_splits,
                      duplicates_across_classes (groups of identical images), and
                      duplicates_dropped (images) under data.duplicates=drop
            tag       tune.data.layout: "split folders" or "one folder"
            artifacts skipped_files.csv: split, path, kind (skipped | ignored), reason
                      data/train_files.txt, data/validation_files.txt, data/test_files.txt:
                      one file a line, relative to data.root with "/" separators, in
                      pipeline order; a line's class is its parent folder's name
                      data/duplicates.csv: group, split, class, path (relative to data.root)
"""

from __future__ import annotations

import logging
from typing import List

from tune.data.duplicates import describe
from tune.data.layout import lines_text, relative_lines
from tune.data.pipeline import SearchData
from tune.data.scan import Skipped
from tune.reports.tables import write_csv
from tune.tracking.recorder import SweepRecorder

log = logging.getLogger("tune.data")
SHOWN = 10  # skipped files named in the log; the CSV lists them all
LAYOUT_TAG = "tune.data.layout"


def data_summary(data: SearchData) -> str:
    """One line for the log before the first trial, e.g.

    "data (split folders): 3 classes; 21 training, 9 validation, 9 test images; 0 files
    skipped; identical images: 0 within a split, 1 across splits, 0 across classes"
    """
    counts, bad = data.counts, sum(s.bad for s in data.skipped)
    return (
        f"data ({data.layout}): {len(data.class_names)} classes; {counts['train']} training, "
        f"{counts['validation']} validation, {counts['test']} test images; {bad} files skipped; "
        f"identical images: {describe(data.duplicates)}"
        + (f", {data.duplicates['duplicates_dropped']} dropped" if "duplicates_dropped" in data.duplicates else "")
    )


def log_data_report(recorder: SweepRecorder, data: SearchData, root: str) -> None:
    """Log the counts, the baseline, the split files, the duplicates and the files left out on the sweep's run.

    Args:
        recorder: the sweep's recorder.
        data: the search data.
        root: `data.root`, which the listed paths are relative to.
    """
    run, client = recorder.parent_run_id, recorder.client
    metrics = {f"{split}_images": n for split, n in data.counts.items()}
    metrics.update(skipped_files=sum(s.bad for s in data.skipped), baseline_val_accuracy=data.baseline_accuracy)
    recorder.log_metrics(run, {**metrics, **data.duplicates})
    client.set_tag(run, LAYOUT_TAG, data.layout)
    splits = {"train": data.train_files, "validation": data.validation_files, "test": data.test_files}
    for split, files in splits.items():
        client.log_text(run, lines_text(relative_lines(root, files)), f"data/{split}_files.txt")
    client.log_text(run, write_csv(["group", "split", "class", "path"], data.duplicate_rows), "data/duplicates.csv")
    _report_skipped(recorder, data.skipped)


def _report_skipped(recorder: SweepRecorder, skipped: List[Skipped]) -> None:
    """skipped_files.csv, and the unusable files in the log."""
    bad = [s for s in skipped if s.bad]
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
