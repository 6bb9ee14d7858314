"""The config: its typed schema (Hydra ConfigStore), `Settings` with absolute paths, value checks."""
