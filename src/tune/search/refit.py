"""The refit: the best trial's configuration trained once more, on training + validation images.

The search picks a configuration on the validation split; the model it registers is then
trained on every training image (`tuner.refit=true`, the default): the best trial's
hyperparameters, the same starting weights (`hypermodel.build`), and for each phase the
epochs its trial chose (the epochs up to its best one), run exactly, since with no
validation split left nothing can stop them early. With the activation cache, the refit
trains on the cached activations of both splits' rows (each epoch one of the training
views of a training image, as the trials drew; the validation rows as cached, one view);
without it, on both splits' images, augmented as training images are.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tune.config.schema import AugmentConfig
from tune.data.pipeline import SplitRows, augmentation, pipeline
from tune.model.activations import ActivationStore
from tune.tracking.recorder import SweepRecorder
from tune.tracking.records import TrialRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefitEpochs:
    """Epochs of each phase a refit runs.

    Attributes:
        head: phase 1 (base frozen), >= 1.
        fine_tune: phase 2 (layers thawed), >= 0.
    """

    head: int
    fine_tune: int


@dataclass(frozen=True)
class RefitPlan:
    """How a sweep refits its best configuration (`tuner.refit=true`).

    Attributes:
        batch_size: images a batch (`data.batch_size`).
        augment: the training augmentation (`training.augment`).
        seed: shuffles the batches (`data.seed`).
    """

    batch_size: int
    augment: AugmentConfig
    seed: int


@dataclass
class Refit:
    """What a refit trained and how long it took.

    Attributes:
        trial_id: the trial whose configuration was refitted.
        epochs: the epochs of each phase it ran.
        images: images it trained on (training + validation).
        seconds: wall-clock time of its training.
        model: the refitted classifier, raw RGB pixels in [0, 255] in.
        history: Keras log key ("loss", "accuracy") -> one value an epoch, both phases.
    """

    trial_id: str
    epochs: RefitEpochs
    images: int
    seconds: float
    model: keras.Model
    history: Dict[str, list]


def chosen_epochs(history: Sequence[float], epochs_head: int, direction: str) -> RefitEpochs:
    """The epochs of each phase that lead to a trial's kept model.

    A phase keeps its first best epoch (early stopping restores it), and keras-tuner keeps
    the trial's first best epoch over both phases: a best epoch in phase 1 means phase 2's
    epochs were not kept.

    Args:
        history: the objective at each epoch the trial ran, in order, phase 1's first.
        epochs_head: how many of them phase 1 ran.
        direction: "max" or "min", the objective's.
    """
    pick = np.nanargmax if direction == "max" else np.nanargmin
    best = int(pick(np.asarray(history, float)))
    if best < epochs_head:
        return RefitEpochs(best + 1, 0)
    head = int(pick(np.asarray(history[:epochs_head], float))) + 1 if epochs_head else 0
    return RefitEpochs(head, best - epochs_head + 1)


def trial_epochs(
    trial, trials: dict, records: Dict[str, TrialRecord], histories: Dict[str, List[float]], direction: str
) -> RefitEpochs:
    """The epochs of each phase behind `trial`'s kept model, from its per-epoch objective.

    keras-tuner keeps only a trial's best value (at its best step), not the epochs before it,
    so the history comes from the trial's own record: the per-epoch objective its MLflow run
    logged (`objective_histories`). A Hyperband trial that continues another started from that
    trial's kept model, so its epochs are added to those. A trial without a history keeps its
    recorded counts.

    Args:
        trial: a completed keras-tuner trial.
        trials: the oracle's trials by id.
        records: trial id -> its record (`epochs_head` is where phase 2 began).
        histories: trial id -> the objective at each epoch the trial ran, in order.
        direction: "max" or "min", the objective's.
    """
    record = records[trial.trial_id]
    history = histories.get(trial.trial_id)
    if history and len(history) == record.epochs_head + record.epochs_fine_tune:
        own = chosen_epochs(history, record.epochs_head, direction)
    else:
        own = RefitEpochs(record.epochs_head, record.epochs_fine_tune)
    previous = trial.hyperparameters.values.get("tuner/trial_id")
    if not previous:
        return own
    before = trial_epochs(trials[previous], trials, records, histories, direction)
    return RefitEpochs(before.head + own.head, before.fine_tune + own.fine_tune)


def objective_histories(recorder: SweepRecorder, objective: str) -> Dict[str, List[float]]:
    """Trial id -> the objective at each epoch, as its MLflow run logged it (step order)."""
    histories = {}
    for trial_id, run_id in recorder.trial_runs.items():
        points = sorted(recorder.client.get_metric_history(run_id, objective), key=lambda point: point.step)
        histories[trial_id] = [point.value for point in points]
    return histories


@dataclass
class AllRows(ActivationStore):
    """An activation store whose training batches hold the validation rows too, and which has no validation.

    Its key differs from the store it came from, so a hypermodel keeps their batches apart.
    """

    @classmethod
    def of(cls, store: ActivationStore) -> "AllRows":
        fields = {f.name: getattr(store, f.name) for f in dataclasses.fields(store)}
        return cls(**{**fields, "key": f"{store.key}+validation"})

    def train_batches(self, batch_size: int, seed: int) -> tf.data.Dataset:
        """Batches of every training and validation row, reshuffled every epoch.

        Position i < n_train is training image i, one of its views drawn each epoch;
        position n_train + j is validation row j (stored once, after the training views).
        """
        n, views, total = self.n_train, self.views, self.n_train + len(self.validation_labels)
        positions = tf.data.Dataset.range(total).shuffle(total, seed=seed, reshuffle_each_iteration=True)
        if views > 1:
            draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            positions = tf.data.Dataset.zip(positions, draws).map(
                lambda i, r: tf.where(i < n, i + (r % views) * n, i + (views - 1) * n)
            )
        labels = np.concatenate([np.tile(self.train_labels, views), self.validation_labels])  # by stored row
        return self._batches(positions.batch(batch_size), labels, 0)

    def validation_batches(self, batch_size: int) -> None:
        return None


def all_images(rows: SplitRows, batch_size: int, augment: AugmentConfig, seed: int) -> tf.data.Dataset:
    """Batches of (float32 `(batch, h, w, 3)` in [0, 255], int32 labels) of both splits' images.

    Reshuffled every epoch with `seed`, augmented as training images are when `augment` is on.
    """
    then = None
    if augment.enabled:
        layers = augmentation(augment, seed)
        then = lambda x, y: (layers(x, training=True), y)  # noqa: E731
    both = np.concatenate([rows.train_rows, rows.validation_rows])
    labels = np.concatenate([rows.train_labels, rows.validation_labels])
    return pipeline(rows.images, both, labels, batch_size, seed, then)


def refit_best(tuner, best, rows: SplitRows, plan: RefitPlan, recorder: SweepRecorder) -> Refit:
    """Refit the tuner's trial `best` for the epochs its trial chose (`trial_epochs`)."""
    records = {record.trial_id: record for record in tuner.records}
    objective = tuner.oracle.objective
    histories = objective_histories(recorder, objective.name)
    epochs = trial_epochs(best, tuner.oracle.trials, records, histories, objective.direction)
    return refit(tuner.hypermodel, best, epochs, rows, plan.batch_size, plan.augment, plan.seed)


def refit(
    hypermodel, trial, epochs: RefitEpochs, rows: SplitRows, batch_size: int, augment: AugmentConfig, seed: int
) -> Refit:
    """Train `trial`'s configuration once more on both splits, for exactly `epochs`.

    Args:
        hypermodel: the search's `TransferHyperModel`; its `build` and `fit` run the recipe.
        trial: the best completed trial.
        epochs: from `trial_epochs`.
        rows: the decoded images and both splits' rows.
        batch_size: images a batch (`data.batch_size`).
        augment: the training augmentation (`training.augment`).
        seed: shuffles the batches (`data.seed`).
    """
    refitter = copy.copy(hypermodel)
    refitter.training = dataclasses.replace(
        hypermodel.training, head_epochs=epochs.head, fine_tune_epochs=epochs.fine_tune
    )
    refitter.activations = {
        name: {cut: AllRows.of(store) for cut, store in by_cut.items()}
        for name, by_cut in hypermodel.activations.items()
    }
    hp = trial.hyperparameters.copy()
    if "head_epochs" in hp.values:  # a drawn phase 1 length gives way to the epochs its trial kept
        hp.values["head_epochs"] = epochs.head
    images = len(rows.train_rows) + len(rows.validation_rows)
    log.info(
        "refit of trial %s: %d head + %d fine-tuning epochs on %d images (training + validation)",
        trial.trial_id,
        epochs.head,
        epochs.fine_tune,
        images,
    )
    started = time.monotonic()
    model = refitter.build(hp)
    with warnings.catch_warnings():  # early stopping has no validation metric to watch: it never stops
        warnings.filterwarnings("ignore", message="Early stopping conditioned on metric")
        history = refitter.fit(hp, model, all_images(rows, batch_size, augment, seed), validation_data=None)
    seconds = time.monotonic() - started
    log.info("refit of trial %s took %.1f s", trial.trial_id, seconds)
    return Refit(trial.trial_id, epochs, images, seconds, model, dict(history.history))


def record_refit(recorder: SweepRecorder, done: Optional[Refit]) -> None:
    """Record on the sweep's run which model is registered and, after a refit, what it trained.

    Tags `tune.registered_model` ("refit" or "trial") and `tune.refit_trial`; metrics
    `refit_images`, `refit_epochs_head`, `refit_epochs_fine_tune`, `refit_seconds`, and the
    refit's `refit_loss` and `refit_accuracy` at each epoch (step = epoch).
    """
    client, run_id = recorder.client, recorder.parent_run_id
    client.set_tag(run_id, "tune.registered_model", "trial" if done is None else "refit")
    if done is None:
        return
    client.set_tag(run_id, "tune.refit_trial", done.trial_id)
    summary = {
        "refit_images": done.images,
        "refit_epochs_head": done.epochs.head,
        "refit_epochs_fine_tune": done.epochs.fine_tune,
        "refit_seconds": done.seconds,
    }
    recorder.log_metrics(run_id, summary)
    for key, values in done.history.items():
        for epoch, value in enumerate(values):
            recorder.log_metrics(run_id, {f"refit_{key}": value}, step=epoch)
