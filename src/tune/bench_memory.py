"""`python -m tune.bench_memory [--trials N]`: memory over a long sweep (see `tune.cli.bench_memory`)."""

import sys

from tune.cli.bench_memory import main

if __name__ == "__main__":
    sys.exit(main())
