"""The process's own memory: how much it holds, and what TensorFlow would hold on to forever."""

from __future__ import annotations

import contextlib
import gc
import resource
import sys
from pathlib import Path
from typing import Iterator

_STATUS = Path("/proc/self/status")  # Linux: the kernel's view of this process
_CUSTOM_GRADIENT = "CustomGradient-"  # how `tf.custom_gradient` names its registry entries


def process_rss_mb() -> float:
    """Resident set size of this process now, in MB (2**20 bytes).

    On Linux this is `VmRSS` from `/proc/self/status`, so it can fall as well as rise.
    Elsewhere it falls back to `resource.getrusage(RUSAGE_SELF).ru_maxrss`, which is the
    *peak* resident size so far (bytes on macOS, kilobytes on other systems), never lower
    than an earlier reading.
    """
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # the line reads "VmRSS:  123456 kB"
    except OSError:
        pass  # no /proc: not Linux
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def release_traced_gradients() -> int:
    """Forget the gradient functions `tf.custom_gradient` registered while tracing; collect.

    Inside a `tf.function`, each `tf.custom_gradient` call registers a closure in
    TensorFlow's global gradient registry that is never removed. The closure holds the traced
    graph, and the graph holds every variable it captured, so the model's weights outlive
    the model (TensorFlow issue #97697). Keras meets one on every traced training step: the
    optimizer sums gradients with `tf.distribute`'s `ReplicaContext.all_reduce`, which is a
    `tf.custom_gradient`. Without this, each trial of a sweep keeps about one model's weights
    (some 60 MB for VGG16).

    Call it only when no graph traced so far will be differentiated again, e.g. between
    trials: such a graph would no longer find its gradient.

    Returns:
        How many registry entries were dropped; 0 where TensorFlow keeps none.
    """
    from tensorflow.python.framework import ops  # the registry has no public API

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", {})
    names = [name for name in registry if name.startswith(_CUSTOM_GRADIENT)]
    for name in names:
        del registry[name]
    gc.collect()  # the graphs sit in reference cycles
    return len(names)


@contextlib.contextmanager
def frozen_heap() -> Iterator[int]:
    """Collect once, then keep every object alive now out of the collections made inside.

    Before its first trial a sweep process holds a large heap of long-lived objects
    (TensorFlow, Keras, MLflow, the search data), and every trial asks for full collections:
    keras-tuner's `Tuner._try_build` runs `keras.backend.clear_session()` and `gc.collect()`
    for the trained model and again for `load_model`, and `release_traced_gradients` once
    more. Each walks that whole heap: about 0.4 s a collection on 2 CPU cores, some 2 s of
    a 5 s trial on the activation cache. `gc.freeze()` moves the objects alive now to a
    permanent generation that collections skip (Python's `gc.freeze`); what becomes garbage
    later, a trial's models and graphs, is collected as before. Objects frozen here that
    die inside are collected after leaving, when `gc.unfreeze()` has put them back.

    Yields:
        How many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    try:
        yield gc.get_freeze_count()
    finally:
        gc.unfreeze()
