"""Errors raised by `tune`.

Each error says what was received, what was expected, and names the config key or file.
The type decides what happens to a sweep (after keras-tuner's `errors.py`):

- `ConfigError`, `DataError` and `WeightsUnavailableError` are raised before the first
  trial and stop the sweep: nothing could run.
- Anything raised inside a trial marks that trial failed and the search goes on, until
  keras-tuner's `max_consecutive_failed_trials` stops it with the error shown.
"""


class TuneError(Exception):
    """Base class of the errors `tune` raises on purpose."""


class ConfigError(TuneError, ValueError):
    """A config key holds a value that cannot work; the message names the key."""


class DataError(TuneError, ValueError):
    """The image folders do not have the expected layout; the message names the folder."""


class WeightsUnavailableError(TuneError, RuntimeError):
    """Pretrained weights could not be fetched or read; the message names the ways out."""


class RegistryError(TuneError, LookupError):
    """The store, a registered model, a version or an alias is missing or unreadable."""
