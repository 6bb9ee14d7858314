"""The search space and the trial recipe, as a keras-tuner `HyperModel`.

`build(hp)` declares every hyperparameter and returns a classifier with a frozen base; it
reads no data and trains nothing. `fit(hp, model, ...)` runs the two-phase recipe of
`tune.model.recipe`: the head on a frozen base, then the last `thawed_layers` weight-bearing
layers fine-tuned at `learning_rate x fine_tune_lr_factor`, with the same optimizer. A head
on an earlier block (`feature_block` >= 1) has phase 1 only: its `thawed_layers` does not
apply (see `tune.model.space`), so its base stays frozen throughout. Under Hyperband, `fit` takes the
tuner's `epochs` and `initial_epoch`: a trial that continues an earlier one starts from that
trial's best checkpoint (keras-tuner loads it into the model `build` returned), in the
phase the earlier round ended in, and runs only the epochs left.

With activation stores (`tune.model.activations`), each phase trains the classifier's top
above the phase's cut (`tune.model.cuts`) on cached activations instead of running the
frozen layers on every image every epoch: phase 1 from the head's block (the base's output,
or an earlier block's end), phase 2 from the latest cut below the first thawed layer. The
top shares its layers with the classifier, and the tuner's callbacks see the classifier, so
checkpoints, the model keras-tuner reloads and everything downstream are the whole model,
raw pixels in.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Optional, Sequence

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf

from tune.config.schema import HeadConfig, SearchSpace, TrainingConfig
from tune.files import short_hash
from tune.model import cuts
from tune.model.activations import ActivationStore
from tune.model.backbones import freeze, thaw
from tune.model.classifier import build_classifier
from tune.model.recipe import OnFullModel, compile_for_phase, fit_phase, merge_histories, plan_phases, precision
from tune.model.space import choices, declare_space, trial_settings, trial_values, whole_choices

# Batches a compiled step runs per call when training on cached activations. A step of a head
# on activations is about 1 ms of arithmetic but about 10 ms of Keras' per-call overhead on
# this stack; 32 steps a call make that overhead small. Callbacks' batch hooks then run every
# 32 batches; epoch hooks (early stopping, checkpoints, MLflow) are unchanged.
CACHED_STEPS_PER_EXECUTION = 32


class TransferHyperModel(kt.HyperModel):
    """Search space + classifier + two-phase recipe for one data set.

    Args:
        space: the search space; each dimension fixed, a choice or a range.
        num_classes: number of classes, at least 2.
        image_size: (height, width) in pixels.
        weights: base model name -> "imagenet", a weights file path, or None (random).
        statistics: base model name -> feature block -> (mean, variance), float32 `(C',)`
            each, of the features a head on that block reads, for the head's standardisation
            (see `tune.model.base_init`); None (or a missing block) leaves them as they are.
        head: the head's pooling and dropout.
        training: epochs, patience, learning-rate factor and verbosity.
        objective: what early stopping watches, with its direction.
        activations: base model name -> cut -> its cached activations; None (or a missing
            cut) trains the whole classifier on the images.
        batch_size: images a batch on cached activations (`data.batch_size`).
        seed: seeds the shuffling of cached activations and each trial's head.
    """

    def __init__(
        self,
        space: SearchSpace,
        num_classes: int,
        image_size: Sequence[int],
        weights: Dict[str, Optional[str]],
        statistics: Dict[str, Optional[Dict[int, tuple]]],
        head: HeadConfig,
        training: TrainingConfig,
        objective: kt.Objective,
        activations: Optional[Dict[str, Dict[int, ActivationStore]]] = None,
        batch_size: int = 32,
        seed: int = 0,
        strategy: Optional[tf.distribute.Strategy] = None,
    ):
        super().__init__(name="transfer")
        self.space, self.num_classes, self.image_size = space, num_classes, tuple(image_size)
        self.weights, self.statistics = weights, statistics
        self.head, self.training, self.objective = head, training, objective
        self.activations, self.batch_size, self.seed = activations or {}, batch_size, seed
        self._datasets: Dict[str, tuple] = {}  # store key -> its (training, validation) batches
        self._trained: Optional[keras.Model] = None  # see take_trained_model
        self.strategy = strategy  # the tuner's distribution_strategy: models and optimizers are made in its scope

    def _scope(self):
        """The distribution strategy's scope, or no scope without one."""
        return contextlib.nullcontext() if self.strategy is None else self.strategy.scope()

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        """Declare the search space in `hp` and build the classifier, base frozen, compiled for phase 1."""
        values = declare_space(hp, self.space)
        base_name, block = values["base_model"], values["feature_block"]
        with self._scope(), precision(self.training.precision):
            model = build_classifier(
                base_name,
                self.image_size,
                self.num_classes,
                self.weights[base_name],
                self.head,
                head_width=values["head_width"],
                standardize=(self.statistics.get(base_name) or {}).get(block),
                seed=int(short_hash([self.seed, trial_values(hp)], digits=7), 16),
                head_depth=values["head_depth"],
                feature_block=block,
            )
            compile_for_phase(model, values["learning_rate"], values["momentum"], values["optimizer"])
        return model

    def fit(self, hp, model, x, validation_data=None, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
        """Run the two-phase recipe; return the History of the phases run, merged.

        Args:
            hp: the trial's hyperparameters.
            model: the model `build(hp)` returned (with a continued trial's weights loaded).
            x: training batches (images float32 `(batch, h, w, 3)` in [0, 255], int labels).
            validation_data: validation batches; the objective is measured on them.
            callbacks: the tuner's callbacks, forwarded to every phase.
            epochs: the tuner's total epoch budget (Hyperband), or None for phase 1's epochs
                (`search.head_epochs` where the space draws it, else `training.head_epochs`)
                + `training.fine_tune_epochs`.
            initial_epoch: epochs an earlier round of this trial already ran (Hyperband).
            **kwargs: other `search` arguments, unused (`verbose` is `training.verbose`).

        Raises:
            keras_tuner.errors.FailedTrialError: see `tune.model.recipe.fit_phase`.
        """
        values = trial_settings(hp)
        thawed = values["thawed_layers"]
        head_epochs = values["head_epochs"] or self.training.head_epochs  # drawn, else the config's
        plan = plan_phases(thawed, head_epochs, self.training.fine_tune_epochs, epochs, initial_epoch)
        base = model.get_layer("base_model")
        rate, optimizer = values["learning_rate"], (values["optimizer"], values["momentum"])
        stores = self.activations.get(values["base_model"], {})
        histories = []
        self._trained = None
        with self._scope(), precision(self.training.precision):
            if plan.head is not None:
                freeze(base)
                store = stores.get(cuts.cut_for(base, 0))
                histories.append(self._phase(model, store, rate, optimizer, x, validation_data, callbacks, plan.head))
            fine_tune = plan.fine_tune
            if plan.fine_tune_epochs:
                start = histories[-1].epoch[-1] + 1
                fine_tune = (start, start + plan.fine_tune_epochs)
            if fine_tune is not None:
                thaw(base, thawed)
                store = stores.get(cuts.cut_for(base, thawed))
                rate *= self.training.fine_tune_lr_factor
                histories.append(self._phase(model, store, rate, optimizer, x, validation_data, callbacks, fine_tune))
        self._trained = model if len(histories) == 1 else None
        return merge_histories(histories)

    def take_trained_model(self) -> Optional[keras.Model]:
        """The whole classifier the last `fit` trained, if it holds that trial's checkpoint weights; then forget it.

        True after a fit of one phase: early stopping restored the phase's best epoch by the
        objective, and keras-tuner's checkpoint saved that same epoch (both keep the first
        epoch strictly better than all before it, or, without the objective in the logs,
        the last). After two phases the checkpoint's epoch may lie in the first, so None;
        None too after a fit that raised, or when already taken.
        """
        model, self._trained = self._trained, None
        return model

    def _phase(self, model, store, rate, optimizer: tuple, x, validation_data, callbacks, epochs: tuple):
        """One phase on the images (`store` None) or on `store`'s activations, through the top above its cut.

        `optimizer` is (`search.optimizer`, momentum), see `tune.model.recipe.compile_for_phase`.
        """
        training = self.training
        steps = 1
        if store is not None:
            x, validation_data = self._batches(store)
            callbacks = [OnFullModel(callback, model) for callback in callbacks]
            model = cuts.top(model, store.cut)
            steps = CACHED_STEPS_PER_EXECUTION
        compile_for_phase(model, rate, optimizer[1], optimizer[0], steps_per_execution=steps)
        return fit_phase(
            model, x, validation_data, callbacks, epochs, self.objective, training.patience, training.verbose
        )

    def _batches(self, store: ActivationStore) -> tuple:
        """(training, validation) batches of `store`, made once per store, so shuffling runs on across trials."""
        if store.key not in self._datasets:
            self._datasets[store.key] = (
                store.train_batches(self.batch_size, self.seed),
                store.validation_batches(self.batch_size),
            )
        return self._datasets[store.key]

    def validation_probabilities(self, model: keras.Model, hp: kt.HyperParameters) -> Optional[np.ndarray]:
        """The classifier's validation probabilities, float32 `(n, classes)`, from cached activations.

        Read at the cut below the trial's thawed layers, the part its training never
        changed, so equal to `model.predict` on the validation images. None when that cut
        is not cached.
        """
        base, values = model.get_layer("base_model"), trial_settings(hp)
        store = self.activations.get(values["base_model"], {}).get(cuts.cut_for(base, values["thawed_layers"]))
        if store is None:
            return None
        with precision(self.training.precision):
            return cuts.top(model, store.cut).predict(self._batches(store)[1], verbose=0)


def reachable_cuts(base: keras.Model, base_name: str, space: SearchSpace) -> list:
    """Every cut a trial of `space` on the whole base `base` of `base_name` can train from.

    Each `search.feature_block` it draws (`tune.model.cuts.feature_cut`) and, for heads on
    the last block, each phase 2's cut (`tune.model.cuts.reachable_cuts`).
    """
    blocks = [cuts.feature_cut(base, base_name, block) for block in choices(space, "feature_block")]
    return cuts.reachable_cuts(base, whole_choices(space.thawed_layers), blocks)


def phase_of(model: keras.Model) -> str:
    """ "head" while the model's base is frozen, "fine_tune" once any base layer is thawed."""
    return "fine_tune" if model.get_layer("base_model").trainable else "head"
