"""`python -m tune.predict IMAGE [IMAGE ...]`: classify images (see `tune.cli.predict`)."""

import sys

from tune.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
