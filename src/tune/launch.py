"""`python -m tune.launch workers=N [options] [tune arguments]`: a distributed sweep here (see `tune.cli.launch`)."""

import sys

from tune.cli.launch import main

if __name__ == "__main__":
    sys.exit(main())
