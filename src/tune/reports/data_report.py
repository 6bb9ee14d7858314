"""What the data scan and split found, on the sweep's run and in the log.

Before the first trial the console and the log show a summary (`data_summary`):

    data: 3 classes: blue triangle, green square, red circle
    images: 29 train, 7 validation, 12 test; 0 files skipped
    duplicates: 0 within split, 1 across splits
    baseline: always guessing the commonest class scores 0.333 on the validation split

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
from typing import List, Mapping, Optional, Sequence

from tune.data.layout import lines_text, relative_lines
from tune.data.pipeline import SearchData
from tune.data.scan import Skipped
from tune.reports.tables import write_csv
from tune.tracking.recorder import SweepRecorder

log = logging.getLogger("tune.data")
SHOWN = 10  # skipped files named in the log; the CSV lists them all
LAYOUT_TAG = "tune.data.layout"
CLASSES_SHOWN = 5  # class names in the summary


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
