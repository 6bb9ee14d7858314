"""The search space and the trial recipe, as a keras-tuner `HyperModel`.

`build(hp)` declares every hyperparameter and returns a classifier with a frozen base; it
reads no data and trains nothing. `fit(hp, model, ...)` runs the two-phase recipe of
`tune.model.recipe`: the head on a frozen base, then the last `thawed_layers` weight-bearing
layers fine-tuned at `learning_rate x fine_tune_lr_factor`. Under Hyperband, `fit` takes the
tuner's `epochs` and `initial_epoch`: a trial that continues an earlier one starts from that
trial's best checkpoint (keras-tuner loads it into the model `build` returned), in the
phase the earlier round ended in, and runs only the epochs left.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import keras
import keras_tuner as kt

from tune.config.schema import HeadConfig, SearchSpace, TrainingConfig
from tune.model.backbones import freeze, thaw
from tune.model.classifier import build_classifier
from tune.model.recipe import compile_for_phase, fit_phase, merge_histories, plan_phases
from tune.model.space import HYPERPARAMETERS, declare


class TransferHyperModel(kt.HyperModel):
    """Search space + classifier + two-phase recipe for one data set.

    Args:
        space: the search space; each dimension fixed, a choice or a range.
        num_classes: number of classes, at least 2.
        image_size: (height, width) in pixels.
        weights: base model name -> "imagenet", a weights file path, or None (random).
        statistics: base model name -> (mean, variance), float32 `(C,)` each, of its pooled
            features for the head's standardisation (see `tune.model.base_init`), or None.
        head: the head's pooling and dropout.
        training: epochs, patience, learning-rate factor and verbosity.
        objective: what early stopping watches, with its direction.
    """

    def __init__(
        self,
        space: SearchSpace,
        num_classes: int,
        image_size: Sequence[int],
        weights: Dict[str, Optional[str]],
        statistics: Dict[str, Optional[tuple]],
        head: HeadConfig,
        training: TrainingConfig,
        objective: kt.Objective,
    ):
        super().__init__(name="transfer")
        self.space, self.num_classes, self.image_size = space, num_classes, tuple(image_size)
        self.weights, self.statistics = weights, statistics
        self.head, self.training, self.objective = head, training, objective

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        """Declare the search space in `hp` and build the classifier, base frozen, compiled for phase 1."""
        values: Dict[str, Any] = {name: declare(hp, name, getattr(self.space, name)) for name in HYPERPARAMETERS}
        base_name = values["base_model"]
        model = build_classifier(
            base_name,
            self.image_size,
            self.num_classes,
            self.weights[base_name],
            self.head,
            head_width=values["head_width"],
            standardize=self.statistics[base_name],
        )
        compile_for_phase(model, values["learning_rate"], values["momentum"])
        return model

    def fit(self, hp, model, x, validation_data=None, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
        """Run the two-phase recipe; return the History of the phases run, merged.

        Args:
            hp: the trial's hyperparameters.
            model: the model `build(hp)` returned (with a continued trial's weights loaded).
            x: training batches (images float32 `(batch, h, w, 3)` in [0, 255], int labels).
            validation_data: validation batches; the objective is measured on them.
            callbacks: the tuner's callbacks, forwarded to every phase.
            epochs: the tuner's total epoch budget (Hyperband), or None for
                `training.head_epochs` + `training.fine_tune_epochs`.
            initial_epoch: epochs an earlier round of this trial already ran (Hyperband).
            **kwargs: other `search` arguments, unused (`verbose` is `training.verbose`).

        Raises:
            keras_tuner.errors.FailedTrialError: see `tune.model.recipe.fit_phase`.
        """
        thawed = hp.get("thawed_layers")
        plan = plan_phases(thawed, self.training.head_epochs, self.training.fine_tune_epochs, epochs, initial_epoch)
        base = model.get_layer("base_model")
        histories = []
        if plan.head is not None:
            freeze(base)
            compile_for_phase(model, hp.get("learning_rate"), hp.get("momentum"))
            histories.append(self._phase(model, x, validation_data, callbacks, plan.head))
        fine_tune = plan.fine_tune
        if plan.fine_tune_epochs:
            start = histories[-1].epoch[-1] + 1
            fine_tune = (start, start + plan.fine_tune_epochs)
        if fine_tune is not None:
            thaw(base, thawed)
            compile_for_phase(model, hp.get("learning_rate") * self.training.fine_tune_lr_factor, hp.get("momentum"))
            histories.append(self._phase(model, x, validation_data, callbacks, fine_tune))
        return merge_histories(histories)

    def _phase(self, model, x, validation_data, callbacks, epochs: tuple) -> keras.callbacks.History:
        training = self.training
        return fit_phase(
            model, x, validation_data, callbacks, epochs, self.objective, training.patience, training.verbose
        )


def phase_of(model: keras.Model) -> str:
    """ "head" while the model's base is frozen, "fine_tune" once any base layer is thawed."""
    return "fine_tune" if model.get_layer("base_model").trainable else "head"
