"""Trial bookkeeping on real keras-tuner trials: only completed trials count, failures in a row."""

from __future__ import annotations

import keras_tuner as kt
import pytest

from tune.config.schema import ParamSpec
from tune.model.recipe import OBJECTIVES
from tune.model.space import continuation, declare, trial_values
from tune.search.outcome import no_completed_trial
from tune.search.tuners import completed_best, consecutive_failures
from tune.tracking.records import TrialRecord, last_line
from tune.tracking.resume import interrupted


class Oracle:
    """The public state of a keras-tuner oracle that these functions read."""

    def __init__(self, trials, objective="val_accuracy", start_order=None):
        self.trials = {t.trial_id: t for t in trials}
        self.end_order = [t.trial_id for t in trials if t.status != "RUNNING"]
        self.start_order = start_order or list(self.trials)
        self.objective = OBJECTIVES[objective]


def trial(trial_id, status, score=None, **values):
    hp = kt.HyperParameters()
    for name, value in {"learning_rate": 0.01, **values}.items():
        hp.Fixed(name, value)
    made = kt.engine.trial.Trial(hp, trial_id=trial_id, status=status)
    made.score = score
    made.message = (
        None if status == "COMPLETED" else "Traceback ...\nFailedTrialError: loss became nan at epoch 0 batch 1"
    )
    return made


def test_failed_trials_never_pad_the_best_even_when_none_completed():
    assert completed_best(Oracle([trial("0", "FAILED"), trial("1", "INVALID")])) is None
    oracle = Oracle([trial("0", "FAILED"), trial("1", "COMPLETED", 0.5), trial("2", "COMPLETED", 0.75)])
    assert completed_best(oracle).trial_id == "2"
    assert completed_best(Oracle(list(oracle.trials.values()), "val_loss")).trial_id == "1"


def test_consecutive_failures_count_the_run_at_the_end_only():
    statuses = ["FAILED", "COMPLETED", "FAILED", "FAILED"]
    assert consecutive_failures(Oracle([trial(str(i), s, 0.5) for i, s in enumerate(statuses)])) == 2
    assert consecutive_failures(Oracle([trial("0", "FAILED"), trial("1", "COMPLETED", 0.1)])) == 0


def test_a_trial_started_and_never_ended_is_the_interrupted_one():
    oracle = Oracle([trial("0", "COMPLETED", 0.5), trial("1", "RUNNING")], start_order=["0", "1"])
    assert interrupted(oracle) == ["1"]


def test_records_of_failed_trials_carry_the_reason_and_no_score():
    record = TrialRecord.from_trial(trial("3", "FAILED", 0.9), 1, 0, 2.0)
    assert (
        not record.completed and record.score is None and record.reason.endswith("loss became nan at epoch 0 batch 1")
    )
    done = TrialRecord.from_trial(trial("4", "COMPLETED", 0.9, **{"tuner/trial_id": "1"}), 0, 2, 3.0)
    assert done.completed and done.continues == "1" and done.values == {"learning_rate": 0.01}
    line = no_completed_trial([record])
    reason = "loss became nan at epoch 0 batch 1"
    assert line == f"no trial completed (1 FAILED); trial 3 failed with: {reason}; nothing was registered"
    assert (
        last_line("Traceback ...\n  ...\nZeroDivisionError: division by zero") == "ZeroDivisionError: division by zero"
    )
    assert last_line("Traceback ...\nsomething odd: happened here") == "something odd: happened here"


@pytest.mark.parametrize(
    "spec, kind",
    [
        (ParamSpec(value=4), kt.engine.hyperparameters.Fixed),
        (ParamSpec(values=[1, 2]), kt.engine.hyperparameters.Choice),
        (ParamSpec(min=0, max=4), kt.engine.hyperparameters.Int),
    ],
)
def test_each_form_of_a_dimension_declares_its_keras_tuner_kind(spec, kind):
    hp = kt.HyperParameters()
    declare(hp, "thawed_layers", spec)
    assert isinstance(hp.space[0], kind) and trial_values(hp) == {"thawed_layers": hp.values["thawed_layers"]}
    assert continuation(hp) is None
