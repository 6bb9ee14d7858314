"""Resident memory over a short sweep stops growing after the first trial."""

from __future__ import annotations

import numpy as np
import pytest

from tune.cli.bench_memory import judge, trial_rss

pytestmark = pytest.mark.slow
TRIALS = 8  # the first two warm up (caches of MLflow, matplotlib, tf.function); the slope is fitted on the other six
# Growth allowed per trial after the first, in MB. A trial that kept its model (VGG16 at
# 32x32: 14.7 M float32 weights, about 56 MB) would add more than twice this.
PER_TRIAL_MB = 20.0


def test_resident_memory_stops_growing_after_the_first_trial(tmp_path):
    rss = trial_rss(tmp_path, TRIALS)
    assert len(rss) == TRIALS
    slope = np.polyfit(np.arange(TRIALS - 2), rss[2:], 1)[0]  # MB per trial, trials 3..N
    assert slope < PER_TRIAL_MB, f"RSS per trial (MB): {[round(mb) for mb in rss]}"
    assert judge(rss).ok
