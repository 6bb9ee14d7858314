"""Champion or challenger, decided on the test folder (`python -m tune.promote`, see `tune.cli.promote`).

Both the challenger (alias `tracking.alias`, or version `promote.version`) and the current
`champion` are evaluated on the test images the challenger's sweep recorded (see
`tune.tracking.evaluation_data`); the alias `champion` moves to the
challenger when there is no champion, when the challenger's test accuracy is at least the
champion's plus `promote.margin`, or when `promote.force` is true. Each evaluated version gets
the tags `test_accuracy` and `test_loss`; the challenger gets `promotion`, the decision in words.

A version logged by a sweep whose run did not finish with a completed best trial (a sweep
in which every trial failed, say) is never promoted, not even with `promote.force`. A version
tagged `tune.below_baseline=true` (its sweep's best trial did not beat always guessing the
commonest class by `tuner.baseline_margin`) is promoted only with `promote.force`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet, Optional

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tune.config.schema import DataConfig, PromoteConfig, TrackingConfig
from tune.errors import DataError, RegistryError
from tune.tracking import registry
from tune.tracking.evaluation_data import EvaluationSet, load_listed, recorded_test_set


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
        test_images: where both versions' test images came from, in words.
    """

    model_name: str
    challenger: Evaluation
    champion: Optional[Evaluation]
    promoted: bool
    reason: str
    test_images: str = ""


def evaluate(client: MlflowClient, name: str, version, test: EvaluationSet) -> Evaluation:
    """Load one registered version and score it on the test images; tag it with the scores.

    Raises:
        DataError: the test images' classes differ from the model's class names, or a
            listed test file cannot be read.
        RegistryError: the model cannot be loaded.
    """
    from tune.data.pipeline import load_test_images
    from tune.model.inference import score_images

    uri = f"models:/{name}/{version.version}"
    names = registry.class_names(uri, client)
    model = registry.load_classifier(uri)
    size = registry.input_size(model)
    try:
        if test.files is None:
            scan = load_test_images(test.data, size, names)
            images, rows, labels = scan.images, scan.rows, scan.labels
        else:
            images, labels = load_listed(test, size, names)
            rows = np.arange(len(labels), dtype=np.int64)
    except DataError as err:
        raise DataError(f"{name} version {version.version}: {err}") from None
    accuracy, loss = score_images(model, images, rows, labels)
    client.set_model_version_tag(name, version.version, "test_accuracy", f"{accuracy:.6f}")
    client.set_model_version_tag(name, version.version, "test_loss", f"{loss:.6f}")
    return Evaluation(str(version.version), version.run_id, accuracy, loss)


def check_eligible(client: MlflowClient, name: str, version) -> None:
    """Refuse a version logged by a sweep that did not finish with a completed best trial.

    Versions registered outside a sweep (no `tune.role=sweep` tag on their run) pass.

    Raises:
        RegistryError: the version's sweep run ended FAILED or KILLED, or names no completed
            best trial.
    """
    try:
        run = client.get_run(version.run_id)
    except MlflowException:
        return  # the run was deleted; the version stands on its own
    tags = run.data.tags
    if tags.get("tune.role") != "sweep":
        return
    best = tags.get("tune.best_run_id")
    best_status = client.get_run(best).info.status if best else None
    if run.info.status != "FINISHED" or best_status != "FINISHED":
        raise RegistryError(
            f"'{name}' version {version.version} comes from sweep run {version.run_id}, which ended "
            f"{run.info.status} without a completed best trial; it is never promoted. Pick another with "
            "promote.version=N"
        )


def below_baseline(version) -> str:
    """Why a version's sweep found nothing better than the majority-class baseline, or "" when it did.

    Read from the version's tags `tune.below_baseline`, `tune.best_val_accuracy`,
    `tune.baseline_val_accuracy` and `tune.baseline_margin` (see `tune.search.baseline`).
    """
    tags = version.tags or {}
    if tags.get("tune.below_baseline") != "true":
        return ""
    best, baseline = tags.get("tune.best_val_accuracy", "?"), tags.get("tune.baseline_val_accuracy", "?")
    margin = tags.get("tune.baseline_margin", "?")
    return (
        f"v{version.version} does not beat the majority-class baseline (its sweep's best val_accuracy "
        f"{best} < baseline {baseline} + margin {margin})"
    )


def baseline_rule(promoted: bool, reason: str, veto: str, force: bool) -> tuple:
    """(promote?, reason) after the baseline rule: a version below the baseline (`veto`) is kept out unless forced."""
    if not veto or not promoted:
        return promoted, reason
    if force:
        return True, f"{reason}; {veto}"
    return False, f"kept: {veto}; promote.force=true promotes it anyway"


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


def _champion(client: MlflowClient, name: str, challenger: Evaluation, test: EvaluationSet) -> Optional[Evaluation]:
    """The version with alias `champion`, scored on the challenger's test images; None when no version has it."""
    current = registry.version_by_alias(client, name, registry.CHAMPION)
    if current is None:
        return None
    if str(current.version) == challenger.version:
        return challenger  # the same version, scored already
    return evaluate(client, name, current, test)


def promote(
    data: DataConfig, tracking: TrackingConfig, options: PromoteConfig, given: FrozenSet[str] = frozenset()
) -> Decision:
    """Evaluate the challenger and the champion, and move `champion` if the rule says so.

    Args:
        data: the data settings; the challenger's sweep run's recorded `data.*` replace
            them, except the keys in `given`, and its `data/test_files.txt` names the test
            images (see `tune.tracking.evaluation_data`). Image size comes from each
            model's input shape.
        tracking: the store (`uri`), `registered_model_name`, and the challenger's `alias`.
        options: version, margin and force (see `PromoteConfig`).
        given: the `data.*` keys the user set on the command line (`given_data_keys`).

    Returns:
        The `Decision`; the tags and, when promoted, the alias are written already.

    Raises:
        RegistryError: the store is missing or unreadable, the registered model does not
            exist, it has no challenger (or no version `options.version`), or the challenger
            comes from a sweep without a completed trial.
        DataError: the test folder's classes differ from a model's class names.
    """
    client = registry.open_registry(tracking.uri, "set tracking.uri, or run a sweep first (python -m tune)")
    name = tracking.registered_model_name
    registry.require_model(client, name)
    candidate = _challenger(client, tracking, options)
    check_eligible(client, name, candidate)
    test = recorded_test_set(client, candidate.run_id, data, given)
    challenger = evaluate(client, name, candidate, test)
    champion = _champion(client, name, challenger, test)
    promoted, reason = decide(challenger, champion, options.margin, options.force)
    promoted, reason = baseline_rule(promoted, reason, below_baseline(candidate), options.force)
    client.set_model_version_tag(name, challenger.version, "promotion", reason)
    if promoted:
        client.set_registered_model_alias(name, registry.CHAMPION, challenger.version)
    return Decision(name, challenger, champion, promoted, reason, test.source)
