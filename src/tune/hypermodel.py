"""The search space and the trial recipe, as a keras-tuner `HyperModel`.

`build(hp)` declares every hyperparameter and returns a classifier with a frozen base; it
reads no data and trains nothing. `fit(hp, model, ...)` is the two-phase recipe of Chollet,
*Deep Learning with Python* (2nd ed., 8.3), as in the Keras transfer-learning guide:

1. head: base frozen, SGD(learning_rate, momentum), early stopping on the objective with the
   best weights restored;
2. fine-tuning (when thawed_layers > 0): the last N weight-bearing layers of the base thawed,
   recompiled with SGD(learning_rate x fine_tune_lr_factor, momentum), early stopping again.

Epochs run on one continuing axis: phase 2 starts at the epoch after phase 1's last one.

A trial whose loss turns NaN or infinite stops at that batch (Keras `TerminateOnNaN`), and one
that runs out of memory stops too; both raise keras-tuner's `FailedTrialError`, so the trial
is recorded FAILED with the reason and can never be the best, and the search goes on.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf

from tune.backbones import freeze, thaw
from tune.config import HeadConfig, ParamSpec, SearchSpace, TrainingConfig
from tune.model import build_classifier

# name -> the kind of value a range of it holds
HYPERPARAMETERS = {
    "base_model": str,
    "head_width": int,
    "learning_rate": float,
    "momentum": float,
    "thawed_layers": int,
}


def declare(hp: kt.HyperParameters, name: str, spec: ParamSpec) -> Any:
    """Register `name` in `hp` as Fixed, Choice, Int or Float, per `spec`; return its value."""
    kind = HYPERPARAMETERS[name]
    if spec.value is not None:
        return hp.Fixed(name, kind(spec.value))
    if spec.values is not None:
        return hp.Choice(name, [kind(v) for v in spec.values])
    ranged = dict(min_value=kind(spec.min), max_value=kind(spec.max), sampling=spec.sampling)
    if spec.step is not None:
        ranged["step"] = kind(spec.step)
    return (hp.Int if kind is int else hp.Float)(name, **ranged)


def compile_for_phase(model: keras.Model, learning_rate: float, momentum: float) -> None:
    """(Re)compile with SGD; needed after every change of `trainable`."""
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras `TerminateOnNaN` that remembers where the loss stopped being finite.

    Attributes:
        where: `(epoch, batch, loss)` of the first non-finite loss, or None.
    """

    def __init__(self):
        super().__init__()
        self.where = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.where is None and loss is not None and not np.isfinite(float(loss)):
            self.where = (self._epoch, batch, float(loss))
        super().on_batch_end(batch, logs)


def merge_histories(histories: List[keras.callbacks.History]) -> keras.callbacks.History:
    """One History whose `epoch` and `history` lists run through every phase in order."""
    merged = keras.callbacks.History()
    merged.epoch, merged.history = [], {}
    for history in histories:
        merged.epoch += list(history.epoch)
        for key, values in history.history.items():
            merged.history.setdefault(key, []).extend(values)
    return merged


class TransferHyperModel(kt.HyperModel):
    """Search space + classifier + two-phase recipe for one data set.

    Args:
        space: the search space; each dimension fixed, a choice or a range.
        num_classes: number of classes, at least 2.
        image_size: (height, width) in pixels.
        weights: base model name -> "imagenet", a weights file path, or None (random).
        statistics: base model name -> (mean, variance) of its pooled features for the
            head's standardisation (see `tune.model.feature_statistics`), or None.
        head: the head's pooling and dropout.
        training: epochs, patience, learning-rate factor and verbosity.
        objective: the Keras log key early stopping watches, e.g. "val_accuracy".
        direction: "max" or "min", the objective's better direction.
    """

    def __init__(
        self,
        space: SearchSpace,
        num_classes: int,
        image_size: tuple,
        weights: Dict[str, Optional[str]],
        statistics: Dict[str, Any],
        head: HeadConfig,
        training: TrainingConfig,
        objective: str = "val_accuracy",
        direction: str = "max",
    ):
        super().__init__(name="transfer")
        self.space, self.num_classes, self.image_size = space, num_classes, tuple(image_size)
        self.weights, self.statistics = weights, statistics
        self.head, self.training = head, training
        self.objective, self.direction = objective, direction

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        """Declare the search space in `hp` and build the classifier, base frozen."""
        values = {name: declare(hp, name, getattr(self.space, name)) for name in HYPERPARAMETERS}
        base_name = values["base_model"]
        model = build_classifier(
            base_name, self.image_size, self.num_classes, self.weights[base_name], self.head,
            head_width=values["head_width"], standardize=self.statistics[base_name],
        )  # fmt: skip
        compile_for_phase(model, values["learning_rate"], values["momentum"])
        return model

    def fit(self, hp, model, x, validation_data=None, callbacks=(), epochs=None, **kwargs):
        """Run the two-phase recipe; return the History of both phases, merged.

        Args:
            hp: the trial's hyperparameters.
            model: the model `build(hp)` returned.
            x: training batches (images, labels).
            validation_data: validation batches; the objective is measured on them.
            callbacks: the tuner's callbacks, forwarded to both phases.
            epochs: a total epoch budget (Hyperband sets one); None uses the configured
                head_epochs + fine_tune_epochs.
            **kwargs: ignored fit arguments (`initial_epoch` from Hyperband).
        """
        head_epochs, fine_epochs = self.phase_epochs(hp.get("thawed_layers"), epochs)
        base = model.get_layer("base_model")
        freeze(base)
        compile_for_phase(model, hp.get("learning_rate"), hp.get("momentum"))
        histories = [self._fit_phase(model, x, validation_data, callbacks, 0, head_epochs)]
        if fine_epochs:
            thaw(base, hp.get("thawed_layers"))
            lr = hp.get("learning_rate") * self.training.fine_tune_lr_factor
            compile_for_phase(model, lr, hp.get("momentum"))
            start = len(histories[0].epoch)
            histories.append(self._fit_phase(model, x, validation_data, callbacks, start, fine_epochs))
        return merge_histories(histories)

    def phase_epochs(self, thawed: int, budget: Optional[int]) -> tuple:
        """(head epochs, fine-tune epochs) for a trial with `thawed` layers and `budget`."""
        head, fine = self.training.head_epochs, self.training.fine_tune_epochs if thawed else 0
        if budget is None:
            return head, fine
        head = min(head, budget) if fine else budget
        return head, budget - head

    def _fit_phase(self, model, x, validation_data, callbacks, start: int, epochs: int):
        """One phase's `model.fit`; raises `FailedTrialError` on a NaN loss or out of memory."""
        stop = keras.callbacks.EarlyStopping(
            monitor=self.objective, mode=self.direction,
            patience=self.training.patience, restore_best_weights=True,
        )  # fmt: skip
        nan = StopOnNaN()
        try:
            history = model.fit(
                x, validation_data=validation_data, initial_epoch=start, epochs=start + epochs,
                callbacks=[nan, *callbacks, stop], verbose=self.training.verbose, shuffle=False,
            )  # fmt: skip  (the training pipeline reshuffles itself each epoch)
        except tf.errors.ResourceExhaustedError as err:
            raise kt.errors.FailedTrialError(
                f"out of memory: {err.message.splitlines()[0]}; try a smaller data.batch_size or data.image_size"
            ) from None
        if nan.where is not None:
            epoch, batch, loss = nan.where
            raise kt.errors.FailedTrialError(
                f"loss became {loss} at epoch {epoch} batch {batch}; trial stopped "
                "(too high a learning rate is the usual cause)"
            )
        scores = history.history.get(self.objective, [])
        if scores and not np.all(np.isfinite(scores)):
            raise kt.errors.FailedTrialError(f"{self.objective} became {scores[-1]} at epoch {start + len(scores) - 1}")
        return history


def trial_values(hp: kt.HyperParameters) -> Dict[str, Any]:
    """The trial's values of our hyperparameters (keras-tuner's own `tuner/*` left out)."""
    return {name: hp.values[name] for name in HYPERPARAMETERS if name in hp.values}
