"""Errors raised by `tune`, one family, each message naming the key or file.

The type decides what happens to a search (after keras-tuner's `errors.py`):

- `ConfigError`, `DataError` and `WeightsUnavailableError` mean no retry can help: they
  subclass keras-tuner's `FatalError`, so one raised inside a trial stops the search at
  once instead of failing that trial and drawing the next. Most are raised before the
  first trial anyway.
- keras-tuner's `FailedTrialError` (a NaN loss, out of memory; see `tune.model.recipe`)
  fails one trial, and the search goes on.
- Anything else raised inside a trial is a bug: keras-tuner marks the trial failed and
  the search stops after `tuner.options.max_consecutive_failed_trials` of them in a row,
  showing the first traceback (`SearchFailedError`).

`tune`'s commands print a `TuneError` as one line, `tune: error: <message>`, exit status 2.
"""

from __future__ import annotations

from pathlib import Path

from keras_tuner.errors import FatalRuntimeError, FatalValueError


class TuneError(Exception):
    """Base class of the errors `tune` raises on purpose."""


class ConfigError(TuneError, FatalValueError):
    """A config key holds a value that cannot work; the message names the key."""


class DataError(TuneError, FatalValueError):
    """The image folders do not have the expected layout; the message names the folder."""


class WeightsUnavailableError(TuneError, FatalRuntimeError):
    """Pretrained weights could not be fetched or read; the message names the ways out."""


class RegistryError(TuneError, LookupError):
    """The store, a registered model, a version or an alias is missing or unusable."""


class SearchFailedError(TuneError, RuntimeError):
    """The search ended without a completed trial, or stopped after failures in a row."""


class ProjectBusyError(TuneError, RuntimeError):
    """Another process is running the same search in the same tuner project folder."""


class DistributedError(TuneError, RuntimeError):
    """A worker of a chief/worker search found no chief to work for (see `tune.search.roles`)."""


class ImageError(TuneError, ValueError):
    """A file is missing or is not an image PIL can decode; the message names the file.

    Attributes:
        path: the file.
        reason: why, in one line, without the path (e.g. "image file is truncated").
    """

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot read '{path}' as an image: {reason}")
        self.path, self.reason = path, reason
