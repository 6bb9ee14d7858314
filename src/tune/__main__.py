"""`python -m tune [overrides]`: one sweep (see `tune.cli.sweep`)."""

from tune.cli.sweep import main

if __name__ == "__main__":
    main()
