"""The commands: `tune` (a sweep), `tune-promote`, `tune-predict`, and the memory benchmark.

Each is also `python -m tune`, `python -m tune.promote`, `python -m tune.predict` and
`python -m tune.bench_memory`. Importing this package imports TensorFlow without its C++
start-up lines (absl, oneDNN, CUDA; see `tune.cli.startup`), which it must do before
anything else imports TensorFlow; `--verbose` or `TUNE_VERBOSE=1` keeps them.
"""

import os
import sys

from tune.cli.startup import quiet_tensorflow, wants_verbose

if not wants_verbose(sys.argv[1:], os.environ):
    quiet_tensorflow()
