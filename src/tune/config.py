"""Typed schemas for the config groups `tune` owns, and their conversion from Hydra.

Only `tune.__main__` (the wiring) holds a Hydra `DictConfig`; it calls `load_settings` once,
and everything below works on the frozen dataclasses here. Merging into a schema makes a
misspelt key or a wrongly typed value fail at start-up with its dotted name, not hours into
a sweep (after Hydra's structured-configs tutorial).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tune.errors import ConfigError


@dataclass
class SyntheticConfig:
    """A generated shapes data set (see `tune.synthetic`), written under `DataConfig.root`."""

    classes: int = 4  # 2..8 colour+shape classes
    train_per_class: int = 40
    test_per_class: int = 10
    image_size: int = 32  # pixels, square
    seed: int = 0


@dataclass
class DataConfig:
    """Where the images are and how they are batched.

    The layout is one folder per class: `<root>/<train_dir>/<class>/*.jpg` and
    `<root>/<test_dir>/<class>/*.jpg`. The validation split is taken from `train_dir`;
    `test_dir` is scanned before training (so a bad file stops nothing halfway) but its
    images are used only to evaluate the final best model.
    """

    name: str = "images"  # short label, used in the MLflow experiment name
    root: str = MISSING  # absolute after `load_settings`
    train_dir: str = "Training"
    test_dir: str = "Test"
    image_size: Optional[List[int]] = None  # [height, width] in pixels; null = base's default
    batch_size: int = 32
    validation_fraction: float = 0.2  # of train_dir, in (0, 1)
    seed: int = 0  # seeds the validation split and shuffling
    bad_files: str = "skip"  # skip: leave unreadable/unsupported files out, listed | error: stop, naming them
    max_image_pixels: int = 50_000_000  # larger images (width x height) count as bad files
    synthetic: Optional[SyntheticConfig] = None  # set: generate the images at `root` first


@dataclass
class HeadConfig:
    """The new classifier head placed on the base model's feature map."""

    pooling: str = "avg"  # avg | max | flatten
    standardize: bool = True  # centre and scale the pooled features (see tune.model)
    dropout: float = 0.0  # before the softmax layer, in [0, 1)


@dataclass
class ModelConfig:
    """The base model and where its weights come from."""

    name: str = "vgg16"  # a key of `tune.backbones.BASE_MODELS`
    weights: Optional[str] = "imagenet"  # imagenet | path to a .h5/.weights.h5 file | null
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass
class ParamSpec:
    """One dimension of the search space: a fixed `value`, a choice of `values`, or a range.

    A range is `min`..`max` (inclusive); `step` quantises it and `sampling` is `linear`,
    `log` or `reverse_log`, as in `keras_tuner.HyperParameters.Float`/`Int`.
    """

    value: Any = None
    values: Optional[List[Any]] = None
    min: Any = None  # a number; kept as written, so integer ranges stay integers
    max: Any = None
    step: Any = None
    sampling: str = "linear"


@dataclass
class SearchSpace:
    """The hyperparameters every trial draws."""

    base_model: ParamSpec = field(default_factory=ParamSpec)  # names of base models
    head_width: ParamSpec = field(default_factory=ParamSpec)  # units of the head's Dense layer
    learning_rate: ParamSpec = field(default_factory=ParamSpec)  # SGD learning rate, phase 1
    momentum: ParamSpec = field(default_factory=ParamSpec)  # SGD momentum, in [0, 1)
    thawed_layers: ParamSpec = field(default_factory=ParamSpec)  # see tune.backbones.thaw


@dataclass
class TunerConfig:
    """Which keras-tuner search runs, towards which objective."""

    name: str = "random"  # a key of `tune.tuner.TUNERS`
    objective: str = "val_accuracy"  # a Keras log key: val_accuracy, val_loss, accuracy, loss
    options: Dict[str, Any] = field(default_factory=dict)  # keyword arguments of that tuner
    # false: the same search resumes its tuner project and MLflow run; true: it starts
    # again in an emptied project and a new run (MLflow keeps the old runs).
    overwrite: bool = False


@dataclass
class AugmentConfig:
    """Random augmentation of training images only (Keras preprocessing layers)."""

    enabled: bool = True
    flip: str = "horizontal"  # horizontal | vertical | horizontal_and_vertical
    rotation: float = 0.05  # fraction of a full turn, both ways
    zoom: float = 0.1  # fraction of the image size, both ways


@dataclass
class TrainingConfig:
    """The two-phase trial recipe (head on a frozen base, then fine-tuning)."""

    head_epochs: int = 5  # phase 1, base frozen
    fine_tune_epochs: int = 5  # phase 2, last `thawed_layers` layers of the base trainable
    fine_tune_lr_factor: float = 0.01  # phase-2 learning rate = learning_rate x this
    patience: int = 2  # epochs without improvement of the objective before stopping a phase
    verbose: int = 0  # Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrackingConfig:
    """Where MLflow records sweeps and registers models."""

    uri: str = MISSING  # tracking URI, e.g. sqlite:////abs/path/mlruns/mlflow.db
    artifact_location: str = MISSING  # artifact root for a new experiment (a folder path)
    experiment_name: str = "tune"
    registered_model_name: str = "tune-classifier"
    alias: str = "challenger"  # alias given to each sweep's registered model version


@dataclass
class Settings:
    """Everything a sweep needs, with paths made absolute."""

    data: DataConfig
    model: ModelConfig
    search: SearchSpace
    tuner: TunerConfig
    training: TrainingConfig
    tracking: TrackingConfig
    output_dir: str  # this call's folder (Hydra's run dir): its log and composed config
    tuner_dir: str = ""  # the experiment's tuner projects, one subfolder per search (tune.project)
    cache_dir: str = ""  # decoded-image caches, shared by sweeps of the same files
    seed: int = 0
    overrides: List[str] = field(default_factory=list)  # the command-line overrides, for tags
    resolved_config: str = ""  # the whole composed config as YAML, logged as an artifact


_SCHEMAS = {
    "data": DataConfig,
    "model": ModelConfig,
    "search": SearchSpace,
    "tuner": TunerConfig,
    "training": TrainingConfig,
    "tracking": TrackingConfig,
}


def typed_group(schema: type, node: Any, key: str) -> Any:
    """Merge one config group (a plain dict) into its dataclass schema and return the instance.

    Raises:
        ConfigError: an unknown key or a value of the wrong type, named by its dotted key.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(f"config group '{key}': {err}") from None


def _absolute(path: str, base: Path) -> str:
    """`path` made absolute against `base` (the folder the user launched from)."""
    candidate = Path(path).expanduser()
    return str((candidate if candidate.is_absolute() else base / candidate).resolve())


def absolute_uri(uri: str, base: Path) -> str:
    """A tracking URI whose local path is made absolute against `base`.

    `sqlite:///mlruns/mlflow.db` (relative: three slashes) becomes `sqlite:////<base>/mlruns/
    mlflow.db`; `file:` URIs and bare paths likewise; `http(s)://` and others are unchanged.
    """
    for scheme in ("sqlite:///", "file://"):
        if uri.startswith(scheme):
            path = uri[len(scheme) :]
            if scheme == "sqlite:///" and path in ("", ":memory:"):
                return uri
            return scheme + _absolute(path, base) if scheme == "sqlite:///" else Path(_absolute(path, base)).as_uri()
    if "://" not in uri and ":" not in uri.split("/")[0]:
        return _absolute(uri, base)
    return uri


def load_settings(cfg: DictConfig, launch_dir: Path, overrides: List[str] = ()) -> Settings:
    """Convert the composed Hydra config into typed `Settings`.

    Args:
        cfg: the composed config with groups data, model, search, tuner, training, tracking,
            and keys `seed` and `paths.output_dir`.
        launch_dir: the folder relative paths resolve against (Hydra's original cwd).
        overrides: the command-line overrides, recorded as a tag of the sweep's run.

    Raises:
        ConfigError: a group misses a required key, has an unknown key, or a value of the
            wrong type; `data.root` is not set.
    """
    if OmegaConf.is_missing(cfg.data, "root"):
        raise ConfigError(
            "data.root is not set: point it at a folder that holds "
            "<train_dir>/<class>/*.jpg and <test_dir>/<class>/*.jpg, for example "
            "data.root=~/fruits-360 data.train_dir=Training data.test_dir=Test, "
            "or try experiment=quickstart"
        )
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"config could not be resolved: {err}") from None
    groups = {key: typed_group(schema, resolved[key], key) for key, schema in _SCHEMAS.items()}
    groups["data"].root = _absolute(groups["data"].root, launch_dir)
    tracking = groups["tracking"]
    tracking.uri = absolute_uri(tracking.uri, launch_dir)
    tracking.artifact_location = _absolute(tracking.artifact_location, launch_dir)
    if groups["model"].weights not in (None, "imagenet"):
        groups["model"].weights = _absolute(groups["model"].weights, launch_dir)
    return Settings(
        **groups,
        output_dir=_absolute(str(cfg.paths.output_dir), launch_dir),
        tuner_dir=_absolute(str(cfg.paths.tuner_dir), launch_dir),
        cache_dir=_absolute(str(cfg.paths.cache_dir), launch_dir),
        seed=int(cfg.seed),
        overrides=list(overrides),
        resolved_config=OmegaConf.to_yaml(resolved),
    )
