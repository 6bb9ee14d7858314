"""`python -m tune [--verbose] [-m] [overrides]`: a sweep, or one per job of a multirun (see `tune.cli.sweep`)."""

from tune.cli.sweep import main

if __name__ == "__main__":
    main()
