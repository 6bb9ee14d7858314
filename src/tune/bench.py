"""`python -m tune.bench --preset NAME`: the activation cache off and on, side by side (see `tune.cli.bench`)."""

import sys

from tune.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
