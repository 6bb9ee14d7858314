"""Names MLflow constrains, checked with MLflow's own validators before the first trial.

A sweep names an experiment, a registered model, an alias, and logs params and tags. MLflow
checks each only when it is written, so a registered model name with a "/" used to pass
every trial and fail at registration, at the end. Here each is checked up front; a refusal
is one `ConfigError` naming the key, the value, where it came from and MLflow's rule:

    tracking.registered_model_name='vision/fruits-classifier' (from data.name='vision/fruits');
    MLflow refuses it: Invalid model name 'vision/fruits-classifier'. Names cannot contain '/' or ':'.
"""

from __future__ import annotations

from typing import Callable, Iterable, List, Tuple

from mlflow.exceptions import MlflowException
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    _validate_experiment_name,
    _validate_length_limit,
    _validate_model_alias_name,
    _validate_model_alias_name_reserved,
    _validate_model_name,
    _validate_param_name,
)

from tune.config.schema import TrackingConfig
from tune.errors import ConfigError

# Tag keys a sweep, `tune.promote` and the registry set (runs and model versions).
TAG_KEYS = (
    *("tune.role", "tune.overrides", "tune.trial_id", "tune.error", "tune.best", "tune.best_run_id"),
    *("tune.resumed", "tune.model_version", "tune.registered_trial", "tune.class_names"),
    *("tune.activation_cache", "tune.base_init", "tune.objective_warning", "tune.project"),
    *("tune.space_points", "tune.tuner", "tune.data.layout", "tune.registered_model", "tune.refit_trial"),
    *("tune.below_baseline", "tune.best_val_accuracy", "tune.baseline_val_accuracy", "tune.baseline_margin"),
    *("tune.tuner_id", "tune.oracle", "tune.refit_error"),
    *("class_names", "test_accuracy", "test_loss", "promotion"),
)


def _alias(alias: str) -> None:
    _validate_model_alias_name(alias)
    _validate_model_alias_name_reserved(alias)


def _key(key: str) -> None:
    _validate_param_name(key)
    _validate_length_limit("key", MAX_ENTITY_KEY_LENGTH, key)


def mlflow_problem(validator: Callable[[str], None], value: str) -> str:
    """MLflow's reason for refusing `value`, one line; "" when `validator` accepts it."""
    try:
        validator(value)
    except MlflowException as err:
        return " ".join(err.message.split())
    return ""


def check_names(tracking: TrackingConfig, data_name: str, param_keys: Iterable[str] = ()) -> None:
    """Check the experiment name, registered model name, alias and every param and tag key.

    Args:
        tracking: `experiment_name`, `registered_model_name` and `alias`.
        data_name: `data.name`, which the experiment and model names are made from by default;
            named in the error when a refused value contains it.
        param_keys: the params a sweep logs (`Settings.params()`), whose names include
            user-given keys such as `tuner.options.<key>`.

    Raises:
        ConfigError: the first refused value, with its key, where it came from, and MLflow's rule.
    """
    checks: List[Tuple[str, str, Callable[[str], None]]] = [
        ("tracking.experiment_name", tracking.experiment_name, _validate_experiment_name),
        ("tracking.registered_model_name", tracking.registered_model_name, _validate_model_name),
        ("tracking.alias", tracking.alias, _alias),
    ]
    for key, value, validator in checks:
        problem = mlflow_problem(validator, value)
        if problem:
            source = f" (from data.name={data_name!r})" if data_name and data_name in value else ""
            raise ConfigError(f"{key}={value!r}{source}; MLflow refuses it: {problem}")
    for key in [*param_keys, *TAG_KEYS]:
        problem = mlflow_problem(_key, key)
        if problem:
            raise ConfigError(f"config key {key!r} cannot be an MLflow param or tag name: {problem}")
