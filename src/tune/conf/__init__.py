"""The Hydra config tree `tune` ships with (package data; see `tune.config.schema` for every key)."""
