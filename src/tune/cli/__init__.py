"""The commands: `tune` (a sweep), `tune-promote`, `tune-predict`, and the memory benchmark.

Each is also `python -m tune`, `python -m tune.promote`, `python -m tune.predict` and
`python -m tune.bench_memory`. Importing this package quiets TensorFlow's C++ start-up
lines (INFO and WARNING), which it must do before TensorFlow is imported.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
