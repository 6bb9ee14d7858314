"""Memory: the RSS reading, the release of traced gradients, and the benchmark's verdict."""

from __future__ import annotations

import gc
import mmap
import weakref

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops

from tune.cli.bench_memory import judge
from tune.search.memory import process_rss_mb, release_traced_gradients


def test_rss_follows_a_large_allocation_up():
    before = process_rss_mb()
    block = mmap.mmap(-1, 64 * 2**20)  # fresh anonymous pages: never memory the heap already holds
    np.frombuffer(block, dtype=np.uint8)[:] = 1  # 64 MB, every page touched
    assert process_rss_mb() - before > 50
    block.close()


def test_release_frees_the_graph_a_custom_gradient_kept():
    @tf.custom_gradient
    def double(x):
        return 2.0 * x, lambda dy: 2.0 * dy

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = double(x)
        return tape.gradient(y, x)

    graph = weakref.ref(step.get_concrete_function(tf.TensorSpec([3])).graph)
    del step
    gc.collect()
    assert release_traced_gradients() >= 1
    assert graph() is None
    assert not [name for name in ops._gradient_registry.list() if name.startswith("CustomGradient-")]


def test_judge_allows_ten_percent_or_300_mb_whichever_is_larger():
    assert judge([900.0, 1000.0, 1300.0]).ok  # +300 MB: the absolute bound
    assert not judge([900.0, 1000.0, 1301.0]).ok
    assert judge([4000.0, 4000.0, 4400.0]).ok  # +400 MB is 10 %
    assert not judge([4000.0, 4000.0, 4401.0]).ok
