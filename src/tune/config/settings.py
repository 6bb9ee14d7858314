"""The composed Hydra config turned into typed `Settings`, with every path made absolute.

Only the command-line layer (`tune.cli`) holds a Hydra `DictConfig`; it calls
`load_settings` once, and `run_sweep` and `promote` take the dataclasses it returns.
Below them, functions take the plain values they need.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tune.config.schema import (
    Config,
    DataConfig,
    ModelConfig,
    PromoteConfig,
    SearchSpace,
    TrackingConfig,
    TrainingConfig,
    TunerConfig,
    register_schema,
)
from tune.errors import ConfigError
from tune.tracking.uri import Store, absolute_path, absolute_uri, default_artifact_location, resolve_store

MAX_PARAM = 6000  # MLflow's limit on a param value, in characters
# The groups that define what a sweep computes; logged as params `<group>.<key>`.
SWEEP_GROUPS = ("data", "model", "search", "tuner", "training")


@dataclass
class Settings:
    """Everything a sweep or a promotion needs, paths absolute.

    Attributes:
        data, model, search, tuner, training, tracking, promote: the config groups.
        seed: seeds Keras, the validation split, augmentation and the tuner.
        output_dir: this call's folder (Hydra's run folder): its log and composed config.
        tuner_dir: the experiment's tuner projects, one subfolder per search.
        cache_dir: decoded-image caches, shared by sweeps of the same files.
        overrides: the command-line overrides, recorded as a tag of the sweep's run.
        resolved_config: the whole composed config as YAML, logged as an artifact.
        tracking_source: where `tracking.uri` came from (see `tune.tracking.uri.Store`).
    """

    data: DataConfig
    model: ModelConfig
    search: SearchSpace
    tuner: TunerConfig
    training: TrainingConfig
    tracking: TrackingConfig
    promote: PromoteConfig
    seed: int
    output_dir: str
    tuner_dir: str
    cache_dir: str
    overrides: List[str] = field(default_factory=list)
    resolved_config: str = ""
    tracking_source: str = "tracking.uri"

    def store(self) -> Store:
        """The tracking store and where it came from, e.g. for `Store.line()`."""
        return Store(self.tracking.uri, self.tracking_source)

    def params(self) -> Dict[str, str]:
        """Every leaf of the groups that define a sweep, as `group.key.subkey: "value"`, sorted."""
        flat: Dict[str, str] = {}
        for group in SWEEP_GROUPS:
            flat.update(flatten(group, getattr(self, group)))
        return dict(sorted(flat.items()))


def flatten(prefix: str, value: Any) -> Dict[str, str]:
    """Dotted `prefix.key` names for every leaf of nested dataclasses and dicts, as text.

    Values are cut to MLflow's 6,000-character limit on a param.
    """
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        out: Dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}", item))
        return out
    return {prefix: str(value)[:MAX_PARAM]}


def extra_keys(given: Any, known: Any, prefix: str = "") -> List[str]:
    """Dotted keys of the nested dict `given` that the nested dict `known` lacks, sorted."""
    if not isinstance(given, dict) or not isinstance(known, dict):
        return []
    out = []
    for key, value in given.items():
        name = f"{prefix}{key}"
        out += [name] if key not in known else extra_keys(value, known[key], f"{name}.")
    return sorted(out)


def load_settings(cfg: DictConfig, launch_dir: Path, overrides: Sequence[str] = ()) -> Settings:
    """Convert the composed config (typed by `tune.config.schema`) into `Settings`.

    Args:
        cfg: the composed config, without its `hydra` node.
        launch_dir: the folder relative paths resolve against (Hydra's original cwd).
        overrides: the command-line overrides, recorded as a tag of the sweep's run.

    Raises:
        ConfigError: `data.root` is not set, a key added with `+` is not in the schema,
            `data.image_size` is not a positive size, or an interpolation cannot be resolved.
    """
    if OmegaConf.is_missing(cfg.data, "root"):
        raise ConfigError(
            "data.root is not set: point it at a folder that holds <train_dir>/<class>/*.jpg and "
            "<test_dir>/<class>/*.jpg, e.g. data.root=~/fruits-360 (just <class>/*.jpg: add data=one_folder), "
            "or try experiment=quickstart"
        )
    try:
        config: Config = OmegaConf.to_object(cfg)
        resolved = OmegaConf.to_yaml(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"the config could not be resolved: {str(err).splitlines()[0]}") from None
    unknown = extra_keys(OmegaConf.to_container(cfg), dataclasses.asdict(config))
    if unknown:  # added with `+`, which Hydra allows even on a typed config, and to_object drops
        raise ConfigError(f"config key {unknown[0]} is not one tune has; see python -m tune --cfg job for every key")
    config.data.root = absolute_path(config.data.root, launch_dir)
    config.data.image_size = square_size(config.data.image_size)
    if config.model.weights not in (None, "imagenet"):
        config.model.weights = absolute_path(config.model.weights, launch_dir)
    paths = config.paths
    tracking = config.tracking
    home = Path(absolute_path(paths.root_dir, launch_dir))
    store = resolve_store(tracking.uri, "tracking.uri", os.environ, launch_dir, home)
    tracking.uri = store.uri
    if tracking.artifact_location:
        tracking.artifact_location = absolute_uri(tracking.artifact_location, launch_dir)
    else:
        tracking.artifact_location = default_artifact_location(store.uri, home)
    return Settings(
        data=config.data,
        model=config.model,
        search=config.search,
        tuner=config.tuner,
        training=config.training,
        tracking=tracking,
        promote=config.promote,
        seed=config.seed,
        output_dir=absolute_path(paths.output_dir, launch_dir),
        tuner_dir=absolute_path(paths.tuner_dir, launch_dir),
        cache_dir=absolute_path(paths.cache_dir, launch_dir),
        overrides=list(overrides),
        resolved_config=resolved,
        tracking_source=store.source,
    )


def square_size(size: Any) -> Optional[List[int]]:
    """`data.image_size` as [height, width]: one number n is the square [n, n]; None stays None.

    Raises:
        ConfigError: not a positive whole number nor a list of two.
    """
    if size is None:
        return None
    pair = [size, size] if not isinstance(size, (list, tuple)) else list(size)
    if len(pair) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in pair):
        expected = "expected [height, width] in whole pixels above 0, or one number for a square"
        raise ConfigError(f"data.image_size={size}; {expected}")
    return pair


def compose_config(root: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The config `python -m tune <overrides>` launched from `root` composes (Hydra's Compose API).

    `paths.root_dir` is `root` and this call's output folder `root/experiments/run`, so
    nothing depends on Hydra's runtime; tests and benchmarks build their worlds with it.
    """
    register_schema()
    paths = [f"paths.root_dir={root}", f"paths.output_dir={root}/experiments/run"]
    with initialize_config_module("tune.conf", version_base="1.3"):
        return compose("config", overrides=[*paths, *overrides])


def compose_settings(root: Path, overrides: Sequence[str] = ()) -> Settings:
    """`load_settings` of `compose_config(root, overrides)`, relative paths resolved against `root`."""
    return load_settings(compose_config(root, overrides), root, list(overrides))
