"""The pieces of the two-phase trial recipe: objectives, the epoch plan, one phase's `fit`.

A trial trains on one epoch axis. Phase 1 (head) trains the new head on a frozen base;
phase 2 (fine-tune) thaws the last N weight-bearing layers of the base and trains on at a
small learning rate (Chollet, *Deep Learning with Python*, 2nd ed., 8.3; the Keras
transfer-learning guide). Both phases stop early on the objective and restore their best
weights. `plan_phases` says which epochs each phase may use:

- a budget of its own (random and Bayesian search): phase 1 runs epochs 0 .. H-1
  (`training.head_epochs`), and phase 2 `training.fine_tune_epochs` more, starting after
  phase 1's last epoch;
- a budget from Hyperband (`epochs`, and `initial_epoch` for a trial continuing an earlier
  one): epochs below H belong to phase 1 and epochs from H on to phase 2, so a continued
  trial resumes in the phase its earlier round ended in and only runs the epochs left.

A loss that turns NaN or infinite, or running out of memory, raises keras-tuner's
`FailedTrialError`: the trial is recorded FAILED with the reason and the search goes on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf

from tune.errors import ConfigError

# The Keras log keys a trial reports (compiled with metrics=["accuracy"]), each with the
# direction in which it is better. `val_*` keys are measured on the validation split.
OBJECTIVES = {
    "val_accuracy": kt.Objective("val_accuracy", "max"),
    "val_loss": kt.Objective("val_loss", "min"),
    "accuracy": kt.Objective("accuracy", "max"),
    "loss": kt.Objective("loss", "min"),
}


# training.precision -> the Keras dtype policy every model of a sweep is built under. The
# mixed policies compute in 16 bits and keep variables in float32; Keras wraps the optimizer
# in a LossScaleOptimizer under mixed_float16 (Keras mixed-precision guide).
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


@contextlib.contextmanager
def precision(name: str) -> Iterator[None]:
    """Inside, layers are built with the dtype policy `PRECISIONS[name]`; the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[name])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def distribution_strategy(name: Optional[str]) -> Optional[tf.distribute.Strategy]:
    """The `tf.distribute` strategy `tuner.distribution_strategy` names, or None (one device).

    "mirrored": `tf.distribute.MirroredStrategy()` over every GPU this process sees (on a
    machine without one, the CPU): a copy of the model on each, each batch split between
    them and the gradients summed, so a trial's batch of `data.batch_size` images is spread
    over the GPUs. keras-tuner builds each trial's model in its scope, and
    `TransferHyperModel` trains there.

    Raises:
        ConfigError: `name` is neither None nor "mirrored".
    """
    if name is None:
        return None
    if name != "mirrored":
        raise ConfigError(f"tuner.distribution_strategy={name!r}; expected one of [None, 'mirrored']")
    return tf.distribute.MirroredStrategy()


class OnFullModel(keras.callbacks.Callback):
    """Runs `callback` against `model` while `fit` trains another model sharing its layers.

    A trial trained on cached activations fits its top (`tune.model.cuts.top`), but the
    tuner's callbacks must see the whole classifier: keras-tuner's best-epoch checkpoint
    saves it, and the tuner reads the phase from its base. Every hook is forwarded; the
    model `fit` sets is ignored.
    """

    def __init__(self, callback: keras.callbacks.Callback, model: keras.Model):
        super().__init__()
        self.callback = callback
        callback.set_model(model)

    def set_model(self, model):
        pass

    def set_params(self, params):
        self.callback.set_params(params)


def _forward(hook: str):
    return lambda self, *args, **kwargs: getattr(self.callback, hook)(*args, **kwargs)


for _hook in [name for name in dir(keras.callbacks.Callback) if name.startswith("on_")]:
    setattr(OnFullModel, _hook, _forward(_hook))


def on_training_images(objective: kt.Objective) -> bool:
    """Whether `objective` is measured on the training images (rewards memorising them)."""
    return not objective.name.startswith("val_")


@dataclass(frozen=True)
class PhasePlan:
    """The epochs of one trial's phases, on the trial's epoch axis (0-based, stop exclusive).

    Attributes:
        head: (first, stop) epochs of phase 1, or None when it does not run.
        fine_tune: (first, stop) of phase 2 when its start is fixed (Hyperband), or None.
        fine_tune_epochs: phase-2 epochs to run after phase 1's last epoch, when its start
            follows phase 1 (a budget of its own); 0 when phase 2 does not run that way.
    """

    head: Optional[tuple]
    fine_tune: Optional[tuple] = None
    fine_tune_epochs: int = 0


def plan_phases(
    thawed: int, head_epochs: int, fine_tune_epochs: int, epochs: Optional[int] = None, initial_epoch: int = 0
) -> PhasePlan:
    """Which epochs each phase may run (see the module docstring).

    Args:
        thawed: layers thawed in phase 2; 0 means phase 1 only.
        head_epochs: H, phase 1's epochs, >= 1.
        fine_tune_epochs: phase 2's epochs when the trial has no budget from the tuner.
        epochs: the tuner's total budget (Hyperband), or None.
        initial_epoch: epochs a continued trial already ran, < `epochs`.
    """
    if epochs is None:
        return PhasePlan(head=(0, head_epochs), fine_tune_epochs=fine_tune_epochs if thawed else 0)
    if not thawed:
        return PhasePlan(head=(initial_epoch, epochs))
    head = (initial_epoch, min(head_epochs, epochs)) if initial_epoch < head_epochs else None
    start = max(initial_epoch, head_epochs)
    return PhasePlan(head=head, fine_tune=(start, epochs) if start < epochs else None)


# search.optimizer -> its Keras optimizer at (learning_rate, momentum); Adam has no momentum
# of this kind (its beta_1 stays Keras' default, 0.9) and ignores it.
OPTIMIZERS = {
    "sgd": lambda rate, momentum: keras.optimizers.SGD(learning_rate=rate, momentum=momentum),
    "adam": lambda rate, momentum: keras.optimizers.Adam(learning_rate=rate),
}


def compile_for_phase(
    model: keras.Model,
    learning_rate: float,
    momentum: Optional[float],
    optimizer: str = "sgd",
    steps_per_execution: int = 1,
) -> None:
    """(Re)compile with `OPTIMIZERS[optimizer]`, sparse cross-entropy and accuracy.

    Needed after every change of `trainable`. `momentum` is SGD's, in [0, 1); None or
    ignored for Adam. `steps_per_execution`: batches each compiled call runs (Keras'
    `compile` argument); the weights after an epoch are the same for any value.
    """
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate, momentum),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
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


def fit_phase(
    model: keras.Model,
    train,
    validation,
    callbacks: Sequence[keras.callbacks.Callback],
    epochs: tuple,
    objective: kt.Objective,
    patience: int,
    verbose: int,
) -> keras.callbacks.History:
    """One phase's `model.fit` over epochs `epochs` = (first, stop), early stopping on `objective`.

    The best epoch's weights are restored at the end. `callbacks` (the tuner's) run too.

    Raises:
        keras_tuner.errors.FailedTrialError: the loss or the objective became NaN or
            infinite, or TensorFlow ran out of memory.
    """
    stop = keras.callbacks.EarlyStopping(
        monitor=objective.name, mode=objective.direction, patience=patience, restore_best_weights=True
    )
    nan = StopOnNaN()
    first, last = epochs
    try:
        # shuffle=False: the training pipeline reshuffles itself every epoch
        history = model.fit(
            train,
            validation_data=validation,
            initial_epoch=first,
            epochs=last,
            callbacks=[nan, *callbacks, stop],
            verbose=verbose,
            shuffle=False,
        )
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
    scores = history.history.get(objective.name, [])
    if scores and not np.all(np.isfinite(scores)):
        raise kt.errors.FailedTrialError(f"{objective.name} became {scores[-1]} at epoch {history.epoch[-1]}")
    return history


def merge_histories(histories: List[keras.callbacks.History]) -> keras.callbacks.History:
    """One History whose `epoch` and `history` lists run through every phase in order."""
    merged = keras.callbacks.History()
    merged.epoch, merged.history = [], {}
    for history in histories:
        merged.epoch += list(history.epoch)
        for key, values in history.history.items():
            merged.history.setdefault(key, []).extend(values)
    return merged
