"""Memory: the RSS reading, the release of traced gradients, and the benchmark's verdict."""

from __future__ import annotations

import gc
import mmap
import weakref

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops

from tune.cli.bench_memory import judge
from tune.search.memory import frozen_heap, process_rss_mb, release_traced_gradients


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


class _Node:
    """A reference cycle: only the cycle collector frees it."""

    def __init__(self):
        self.me = self


def test_the_frozen_heap_collects_first_skips_what_was_alive_and_collects_new_garbage():
    garbage = _Node()
    dead = weakref.ref(garbage)
    del garbage  # garbage before entering: collected on entry
    kept = _Node()
    frozen = weakref.ref(kept)
    with frozen_heap() as count:
        assert dead() is None
        assert count > 0 and gc.get_freeze_count() > 0
        del kept  # alive on entry, garbage now: frozen, so skipped
        fresh = _Node()
        new = weakref.ref(fresh)
        del fresh  # made inside: collected as usual
        gc.collect()
        assert new() is None
        assert frozen() is not None
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert frozen() is None  # unfrozen on leaving, then collected
