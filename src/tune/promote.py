"""`python -m tune.promote [overrides]`: champion or challenger (see `tune.cli.promote`)."""

from tune.cli.promote import main

if __name__ == "__main__":
    main()
