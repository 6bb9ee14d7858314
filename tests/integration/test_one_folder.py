"""One folder of class folders (`data.test_dir=null`), swept end to end: the test evaluation
scores exactly the carved files the sweep run lists, and none of them was trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import tune.search.outcome
import tune.search.sweep
from conftest import TINY, make_settings
from tune.data.layout import relative_lines
from tune.search.sweep import run_sweep

pytestmark = pytest.mark.slow


def test_a_one_folder_sweep_scores_exactly_the_carved_test_files(tmp_path, monkeypatch):
    settings = make_settings(tmp_path, [*TINY, "data.train_dir=.", "data.test_dir=null"])
    loaded, scored = [], []
    load, score = tune.search.sweep.load_search_data, tune.search.outcome.score_images

    def spy_load(*args, **kwargs):
        loaded.append(load(*args, **kwargs))
        return loaded[-1]

    def spy_score(model, images, rows, labels):
        scored.append((np.array(rows), np.array(labels)))
        return score(model, images, rows, labels)

    monkeypatch.setattr(tune.search.sweep, "load_search_data", spy_load)
    monkeypatch.setattr(tune.search.outcome, "score_images", spy_score)
    result = run_sweep(settings)
    (data,), ((rows, labels),) = loaded, scored
    client, root = MlflowClient(settings.tracking.uri), settings.data.root
    folder = Path(client.download_artifacts(result.parent_run_id, "data", str(tmp_path / "got")))
    lines = {s: (folder / f"{s}_files.txt").read_text().splitlines() for s in ("train", "validation", "test")}
    scan = data.test.scan
    row_of = dict(zip(relative_lines(root, scan.files), scan.rows))
    assert [row_of[line] for line in lines["test"]] == list(rows)  # scored: the listed files, in their order
    assert list(labels) == [data.class_names.index(line.split("/")[0]) for line in lines["test"]]
    assert len(lines["test"]) == 3 * 2 and all(line.count("/") == 1 for line in lines["test"])  # <class>/<file>
    assert set(lines["test"]).isdisjoint(lines["train"] + lines["validation"])
    assert set(rows).isdisjoint(np.concatenate([data.rows.train_rows, data.rows.validation_rows]))  # never cached
    run = client.get_run(result.parent_run_id)
    assert run.data.tags["tune.data.layout"] == "one folder" and run.data.metrics["test_images"] == 6
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.test_metrics["test_accuracy"])
    assert (folder / "duplicates.csv").is_file() and run.data.metrics["duplicates_across_splits"] == 0
