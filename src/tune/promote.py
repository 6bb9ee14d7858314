"""`python -m tune.promote [overrides]`: champion or challenger, decided on the test folder.

Uses the sweep's own config tree, so the store, the registered model name and the test folder
follow the same overrides (`python -m tune.promote experiment=quickstart promote.margin=0.01`).
Both the challenger (alias `tracking.alias`, or version `promote.version`) and the current
`champion` are evaluated on `<data.root>/<data.test_dir>`; the alias `champion` moves to the
challenger when there is no champion, when the challenger's test accuracy is at least the
champion's plus `promote.margin`, or when `promote.force` is true. Each evaluated version gets
the tags `test_accuracy` and `test_loss`; the challenger gets `promotion`, the decision in words.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from tune import registry  # noqa: E402
from tune.config import DataConfig, TrackingConfig, typed_group  # noqa: E402
from tune.errors import ConfigError, DataError, RegistryError, TuneError  # noqa: E402


@dataclass
class PromoteConfig:
    """The `promote` config group (conf/promote/default.yaml)."""

    version: Optional[int] = None  # a version to evaluate instead of the challenger alias
    margin: float = 0.0  # required gain in test accuracy over the champion, in [0, 1]
    force: bool = False  # move `champion` to the challenger whatever the scores


@dataclass
class Evaluation:
    """One model version's scores on the test folder.

    Attributes:
        version: the registered version number, as MLflow gives it (a string).
        run_id: the MLflow run the model was logged in (the sweep's run).
        test_accuracy: fraction of test images whose top class is right, in [0, 1].
        test_loss: mean sparse categorical cross-entropy, in nats, >= 0.
    """

    version: str
    run_id: str
    test_accuracy: float
    test_loss: float


@dataclass
class Decision:
    """What `promote` found and did.

    Attributes:
        model_name: the registered model.
        challenger: the evaluated challenger.
        champion: the champion before the decision, or None when there was none.
        promoted: whether the alias `champion` now points at the challenger because of this call.
        reason: the decision in words, also the challenger's `promotion` tag.
    """

    model_name: str
    challenger: Evaluation
    champion: Optional[Evaluation]
    promoted: bool
    reason: str


def load_promote_config(cfg: DictConfig) -> PromoteConfig:
    """The typed `promote` group of the composed config.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or a margin outside [0, 1].
    """
    options = typed_group(PromoteConfig, OmegaConf.to_container(cfg.promote, resolve=True), "promote")
    if not 0.0 <= options.margin <= 1.0:
        raise ConfigError(f"promote.margin={options.margin}; expected a test-accuracy gain in [0, 1]")
    if options.version is not None and options.version < 1:
        raise ConfigError(f"promote.version={options.version}; expected a version number >= 1 or null")
    return options


def scores(model, batches) -> tuple:
    """(accuracy, loss) of `model` over labelled batches, computed by Keras as the sweep does.

    Args:
        model: float32 `(batch, h, w, 3)` RGB in [0, 255] in, `(batch, classes)` probabilities out.
        batches: a `tf.data.Dataset` of (images, int labels `(batch,)` in [0, classes)).

    Returns:
        (accuracy in [0, 1], mean sparse categorical cross-entropy in nats).
    """
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    metrics = model.evaluate(batches, return_dict=True, verbose=0)
    return float(metrics["accuracy"]), float(metrics["loss"])


def evaluate(client: MlflowClient, name: str, version, data: DataConfig) -> Evaluation:
    """Load one registered version and score it on the test folder; tag it with the scores.

    Raises:
        DataError: the test folder's classes differ from the model's class names.
        RegistryError: the model cannot be loaded.
    """
    from tune.data import load_test_data

    uri = f"models:/{name}/{version.version}"
    names = registry.class_names(uri, client)
    model = registry.load_classifier(uri)
    try:
        test = load_test_data(data, registry.input_size(model), names)
    except DataError as err:
        raise DataError(f"{name} version {version.version}: {err}") from None
    accuracy, loss = scores(model, test)
    client.set_model_version_tag(name, version.version, "test_accuracy", f"{accuracy:.6f}")
    client.set_model_version_tag(name, version.version, "test_loss", f"{loss:.6f}")
    return Evaluation(str(version.version), version.run_id, accuracy, loss)


def decide(challenger: Evaluation, champion: Optional[Evaluation], margin: float, force: bool) -> tuple:
    """(promote?, reason): the promotion rule, with the numbers it compared."""
    if champion is None:
        return True, f"promoted: no champion before (test accuracy {challenger.test_accuracy:.4f})"
    if champion.version == challenger.version:
        return False, f"kept: v{champion.version} is the champion already"
    comparison = f"{challenger.test_accuracy:.4f} vs {champion.test_accuracy:.4f} + {margin:.4f}"
    if force:
        return True, f"forced over champion v{champion.version}: {comparison}"
    if challenger.test_accuracy >= champion.test_accuracy + margin - 1e-12:  # float slack only
        return True, f"promoted over champion v{champion.version}: {comparison.replace(' vs ', ' >= ')}"
    return False, f"kept champion v{champion.version}: {comparison.replace(' vs ', ' < ')}"


def _challenger(client: MlflowClient, tracking: TrackingConfig, options: PromoteConfig):
    """The version to evaluate: `options.version`, else the one with alias `tracking.alias`."""
    name = tracking.registered_model_name
    if options.version is not None:
        return registry.get_version(client, name, options.version)
    found = registry.version_by_alias(client, name, tracking.alias)
    if found is None:
        raise RegistryError(
            f"registered model '{name}' has no version with alias @{tracking.alias}: run a sweep "
            f"to make one (python -m tune with the same data overrides), or pick one with promote.version=N"
        )
    return found


def _champion(client: MlflowClient, name: str, challenger: Evaluation, data: DataConfig) -> Optional[Evaluation]:
    """The version with alias `champion`, scored on the test folder; None when no version has it."""
    current = registry.version_by_alias(client, name, registry.CHAMPION)
    if current is None:
        return None
    if str(current.version) == challenger.version:
        return challenger  # the same version, scored already
    return evaluate(client, name, current, data)


def promote(data: DataConfig, tracking: TrackingConfig, options: PromoteConfig) -> Decision:
    """Evaluate the challenger and the champion, and move `champion` if the rule says so.

    Args:
        data: the test folder (`root`/`test_dir`) and `batch_size`; image size comes from
            each model's input shape.
        tracking: the store (`uri`), `registered_model_name`, and the challenger's `alias`.
        options: version, margin and force (see `PromoteConfig`).

    Returns:
        The `Decision`; the tags and, when promoted, the alias are written already.

    Raises:
        RegistryError: the store is missing or unreadable, the registered model does not
            exist, or it has no challenger (or no version `options.version`).
        DataError: the test folder's classes differ from a model's class names.
    """
    client = registry.open_registry(tracking.uri, "set tracking.uri, or run a sweep first (python -m tune)")
    name = tracking.registered_model_name
    registry.require_model(client, name)
    challenger = evaluate(client, name, _challenger(client, tracking, options), data)
    champion = _champion(client, name, challenger, data)
    promoted, reason = decide(challenger, champion, options.margin, options.force)
    client.set_model_version_tag(name, challenger.version, "promotion", reason)
    if promoted:
        client.set_registered_model_alias(name, registry.CHAMPION, challenger.version)
    return Decision(name, challenger, champion, promoted, reason)


def report(decision: Decision) -> str:
    """The two versions side by side and the decision, for the terminal."""
    rows: List[tuple] = [("", "version", "run id", "test_accuracy", "test_loss")]
    for role, ev in (("challenger", decision.challenger), ("champion", decision.champion)):
        if ev is None:
            rows.append((role, "-", "-", "-", "-"))
        else:
            rows.append((role, f"v{ev.version}", ev.run_id, f"{ev.test_accuracy:.4f}", f"{ev.test_loss:.4f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    alias = f"@{registry.CHAMPION}"
    now = f"{alias} -> v{decision.challenger.version}" if decision.promoted else f"{alias} unchanged"
    return "\n".join([f"registered model: {decision.model_name}", *lines, f"decision: {decision.reason} ({now})"])


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """Compose the config, run `promote`, print the table; errors of ours exit with status 2."""
    from tune.config import load_settings

    hydra_cfg = HydraConfig.get()
    try:
        settings = load_settings(cfg, Path(hydra_cfg.runtime.cwd), list(hydra_cfg.overrides.task))
        decision = promote(settings.data, settings.tracking, load_promote_config(cfg))
    except TuneError as err:
        print(f"tune: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(report(decision))


if __name__ == "__main__":
    main()
