"""The typed schema of `tune`'s config: every key, its type and its one default.

Registered in Hydra's ConfigStore as `schema` and listed first in `conf/config.yaml`'s
defaults, so the YAML files are deltas on these dataclasses and OmegaConf checks every
key and type while composing: a misspelt key or `training.head_epochs=three` stops at
start-up with the dotted key named, not hours into a sweep (after Hydra's structured-config
tutorial). Values with a closed set or a range are checked next, by `tune.config.checks`.

`python -m tune --cfg job` prints the composed config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING


@dataclass
class PathsConfig:
    """Where things go. Relative paths anywhere in the config resolve against `root_dir`."""

    # The folder `python -m tune` was launched from, whatever hydra.job.chdir says.
    root_dir: str = II("hydra:runtime.cwd")
    # This call's folder: Hydra's log (tune.log) and composed config.
    output_dir: str = II("hydra:runtime.output_dir")
    # keras-tuner projects, one subfolder per search definition (see tune.search.project).
    tuner_dir: str = "${paths.root_dir}/experiments/${tracking.experiment_name}/tuner"
    # Decoded images, reused by later sweeps while the files are unchanged.
    cache_dir: str = "${paths.root_dir}/experiments/.cache"


@dataclass
class SyntheticConfig:
    """A generated shapes data set (see `tune.data.synthetic`), written under `data.root`."""

    classes: int = 4  # 2..8 colour+shape classes
    train_per_class: int = 40  # a fifth of these become the validation split
    test_per_class: int = 10
    image_size: int = 32  # pixels, square, at least 8
    seed: int = 0  # composed: the top-level seed (conf/data/shapes.yaml)


@dataclass
class DataConfig:
    """Where the images are and how they are batched.

    The layout is one folder per class: `<root>/<train_dir>/<class>/*.jpg` and
    `<root>/<test_dir>/<class>/*.jpg`. The validation split is taken from `train_dir`;
    `test_dir` is scanned before training (so a bad file stops nothing halfway) but its
    images are used only to evaluate the final best model. With `test_dir: null` (preset
    `data=one_folder`) the test split is carved out of `train_dir` first, `test_fraction`
    of each class, and the validation split is drawn from the rest.
    """

    name: str = "images"  # the MLflow experiment and registered model are named after it
    root: str = MISSING  # required: data.root=/path/to/images
    train_dir: str = "Training"  # "." is data.root itself: <root>/<class>/*.jpg
    # null: no test folder; the test split is carved out of train_dir (data=one_folder)
    test_dir: Optional[str] = "Test"
    test_fraction: float = 0.2  # with test_dir null: share of each class held out for test, in (0, 1)
    # [height, width] in pixels, or one number for a square (load_settings makes it [n, n]);
    # null: the base model's own
    image_size: Any = None
    batch_size: int = 32  # images a batch, at least 1
    validation_fraction: float = 0.2  # share of each class of train_dir held out, in (0, 1)
    # random | blocks: per class one run of files sorted by name (video frames stay on one side)
    # | groups: near-duplicate images (data.group_distance) stay on one side. Also the test carve.
    validation_split: str = "random"
    group_distance: int = 6  # groups: the most differing bits of two images' 64-bit difference hashes, 0..64
    # identical decoded images: report (warn, list) | drop (keep one copy, in training if
    # there is one; drop groups that span classes) | error (stop, naming them)
    duplicates: str = "report"
    seed: int = 0  # seeds the validation split and the shuffling; composed: the top-level seed
    bad_files: str = "skip"  # skip: unusable files left out and listed | error: stop, naming them
    max_image_pixels: int = 50_000_000  # width x height above which a file counts as bad
    synthetic: Optional[SyntheticConfig] = None  # set (data=shapes): generate the images at root


@dataclass
class HeadConfig:
    """The new classifier head placed on the base model's feature map (see tune.model.classifier)."""

    pooling: str = "avg"  # avg | max | flatten
    standardize: bool = True  # centre and scale the pooled features, measured once per sweep
    dropout: float = 0.0  # before the softmax layer, in [0, 1)
    grid: int = 3  # search.feature_block >= 1: the block's output averaged to grid x grid cells, >= 1


@dataclass
class ModelConfig:
    """The base model and where its weights come from."""

    name: str = "vgg16"  # a key of tune.model.backbones.BASE_MODELS: vgg16 | xception
    # imagenet (downloaded once to ~/.keras/models) | a local weights file of the base without
    # its top | null: random, scaled to unit variance (see tune.model.base_init)
    weights: Optional[str] = "imagenet"
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass
class ParamSpec:
    """One dimension of the search space: a fixed `value`, a choice of `values`, or a range.

    The first one set wins. A range is `min`..`max` (inclusive); `step` quantises it and
    `sampling` is linear, log or reverse_log, as in `keras_tuner.HyperParameters.Float`/`Int`.
    """

    value: Any = None
    values: Optional[List[Any]] = None
    min: Any = None  # a number; kept as written, so integer ranges stay integers
    max: Any = None
    step: Any = None
    sampling: str = "linear"


@dataclass
class SearchSpace:
    """The hyperparameters every trial draws (the space itself is in conf/search/)."""

    base_model: ParamSpec = field(default_factory=ParamSpec)  # names of base models
    head_width: ParamSpec = field(default_factory=ParamSpec)  # units of the head's Dense layer
    learning_rate: ParamSpec = field(default_factory=ParamSpec)  # SGD, phase 1
    momentum: ParamSpec = field(default_factory=ParamSpec)  # SGD momentum, in [0, 1)
    thawed_layers: ParamSpec = field(default_factory=ParamSpec)  # fine-tuned in phase 2
    # Optional: unset (no value, values or range), each keeps the classic recipe, in brackets.
    optimizer: ParamSpec = field(default_factory=ParamSpec)  # sgd | adam, both phases (sgd)
    head_depth: ParamSpec = field(default_factory=ParamSpec)  # hidden Dense layers of the head, 0 or 1 (1)
    feature_block: ParamSpec = field(default_factory=ParamSpec)  # block the head reads, 0 = last (0)
    head_epochs: ParamSpec = field(default_factory=ParamSpec)  # phase 1's epochs, >= 1 (training.head_epochs)


@dataclass
class DistributedConfig:
    """keras-tuner's chief/worker mode: one search run by several processes (see tune.search.roles).

    Each key may instead come from the environment variable keras-tuner reads (in brackets);
    a key set both ways must agree. All null and no variable set: one process, as usual.
    """

    # "chief" serves the oracle and trains nothing; any other id (tuner0, tuner1, ...) is a
    # worker that trains the trials the chief hands out. [KERASTUNER_TUNER_ID]
    tuner_id: Optional[str] = None
    oracle_ip: Optional[str] = None  # the address the chief serves on [KERASTUNER_ORACLE_IP]
    oracle_port: Optional[int] = None  # its port, 1..65535 [KERASTUNER_ORACLE_PORT]
    # A worker waits this long, in seconds, for the chief to record the sweep run, then stops.
    wait_seconds: float = 600.0


@dataclass
class TunerConfig:
    """Which keras-tuner search runs, towards which objective."""

    name: str = "random"  # random | bayesian | hyperband (tune.search.tuners.TUNERS)
    objective: str = "val_accuracy"  # val_accuracy | val_loss | accuracy | loss
    # Keyword arguments of that keras-tuner class (max_trials, ...); its seed (at least 1)
    # defaults to the top-level seed + 1 (keras-tuner reads 0 as no seed).
    # max_consecutive_failed_trials: the search stops, showing the first failure's
    # traceback, after this many trials failed in a row.
    options: Dict[str, Any] = field(default_factory=lambda: {"max_consecutive_failed_trials": 3})
    # false: the same search resumes its tuner project and MLflow run; true: it starts
    # again in an emptied project and a new run (MLflow keeps the old runs).
    overwrite: bool = False
    # The best trial's val_accuracy must beat always guessing the commonest class by this, in
    # [0, 1]; below it the sweep warns, tags the model version, and tune-promote refuses it.
    baseline_margin: float = 0.05
    # best: a finished search deletes the other trials' weight checkpoints (its tuner state is
    # kept, so a rerun still says it finished) | all: keep every trial's checkpoint.
    keep_checkpoints: str = "best"
    # true: after the search, the best trial's configuration trains once more, from the same
    # starting weights and for the epochs its trial chose in each phase, on the training and
    # validation images together; that model is tested and registered | false: the trial's own.
    refit: bool = True
    # null: each trial trains on one device | mirrored: on every GPU the process sees, one
    # model copy each, gradients summed (tf.distribute.MirroredStrategy; on a CPU, the CPU).
    distribution_strategy: Optional[str] = None
    # Chief/worker mode; left out of the search definition, so chief and workers share a project.
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


@dataclass
class AugmentConfig:
    """Random changes to training images only (Keras preprocessing layers)."""

    enabled: bool = True
    flip: str = "horizontal"  # horizontal | vertical | horizontal_and_vertical | "" (off)
    rotation: float = 0.05  # fraction of a full turn, both ways, in [0, 0.5]; 0 = off
    zoom: float = 0.1  # fraction of the size, both ways, in [0, 1); 0 = off
    # With the activation cache: augmented views of each training image computed once, one
    # drawn per image per epoch; 0 draws a fresh augmentation every epoch (no cache).
    views: int = 2


@dataclass
class TrainingConfig:
    """The two-phase trial recipe (head on a frozen base, then fine-tuning)."""

    head_epochs: int = 5  # phase 1: base frozen, the new head trains; at least 1
    fine_tune_epochs: int = 5  # phase 2: the last thawed_layers layers of the base train too
    fine_tune_lr_factor: float = 0.01  # phase-2 learning rate = learning_rate x this, in (0, 1]
    patience: int = 2  # epochs without a better objective before a phase stops, at least 0
    verbose: int = 2  # Keras fit output: 0 silent, 1 progress bar, 2 one line per epoch
    # auto | on | off: train each trial's top on the frozen layers' outputs, computed once per
    # sweep (tune.model.activations); off runs the whole base every epoch.
    activation_cache: str = "auto"
    activation_storage: str = "float32"  # float32 | float16: dtype of the cached activations
    # float32 | bfloat16 | float16: Keras dtype policy of every model (mixed_* for the last two)
    precision: str = "float32"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrackingConfig:
    """Where MLflow records sweeps and registers models."""

    # SQLite for runs and the Model Registry; or a server: tracking.uri=http://127.0.0.1:5000.
    # null: $MLFLOW_TRACKING_URI, else sqlite:///${paths.root_dir}/mlruns/mlflow.db
    uri: Optional[str] = None
    # For experiments it creates. null: beside a SQLite store (<db folder>/artifacts); a server's own
    artifact_location: Optional[str] = None
    experiment_name: str = "${data.name}"
    registered_model_name: str = "${data.name}-classifier"
    alias: str = "challenger"  # each sweep's registered model version gets this alias


@dataclass
class PromoteConfig:
    """`python -m tune.promote`: the challenger against the champion, on the test folder."""

    version: Optional[int] = None  # a version to evaluate instead of the one holding tracking.alias
    margin: float = 0.0  # the challenger's test accuracy must be >= the champion's + this, in [0, 1]
    force: bool = False  # move `champion` to the challenger whatever the scores


@dataclass
class Config:
    """The whole composed config (the Hydra `hydra` node aside)."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    search: SearchSpace = field(default_factory=SearchSpace)
    tuner: TunerConfig = field(default_factory=TunerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    seed: int = 0  # seeds Keras, the validation split, augmentation and the tuner


def register_schema() -> None:
    """Store `Config` in Hydra's ConfigStore as `schema` (idempotent)."""
    ConfigStore.instance().store(name="schema", node=Config)
