"""Chief/worker mode's MLflow bookkeeping: a restarted worker closes what it left open; the chief reads all back."""

from __future__ import annotations

import keras_tuner as kt

from tune.tracking.recorder import SweepRecorder
from tune.tracking.resume import close_worker_runs, collect_trials
from tune.tracking.store import open_store


def trial(trial_id: str, status: str, score=None):
    hp = kt.HyperParameters()
    hp.Fixed("learning_rate", 0.01)
    made = kt.engine.trial.Trial(hp, trial_id=trial_id, status=status)
    made.score = score
    return made


class ChiefOracle:
    """What a worker (`get_trial`) and the chief (`trials`, `end_order`) read of the chief's oracle."""

    def __init__(self, *trials):
        self.trials = {t.trial_id: t for t in trials}
        self.end_order = [t.trial_id for t in trials if t.status != "RUNNING"]

    def get_trial(self, trial_id):
        return self.trials[trial_id]


def test_a_restarted_worker_closes_only_its_own_stale_runs_and_the_chief_reads_the_reruns(tmp_path):
    experiment = open_store(f"sqlite:///{tmp_path}/mlflow.db", "workers", str(tmp_path / "artifacts"))
    killed = SweepRecorder.start(experiment, "sweep", {}, "", [], {})
    for trial_id, worker in (("0", "tuner0"), ("1", "tuner0"), ("2", "tuner1")):
        killed.start_trial(trial_id, {"learning_rate": 0.01}, {"tune.tuner_id": worker})
    oracle = ChiefOracle(trial("0", "RUNNING"), trial("1", "COMPLETED", 0.5), trial("2", "RUNNING"))

    restarted = SweepRecorder(experiment, killed.parent_run_id)
    assert sorted(close_worker_runs(restarted, "tuner0", oracle, "val_accuracy")) == ["0", "1"]
    runs = {r.data.tags["tune.trial_id"]: r for r in restarted.child_runs()}
    assert runs["0"].info.status == "KILLED" and "worker tuner0 stopped" in runs["0"].data.tags["tune.error"]
    assert runs["1"].info.status == "FINISHED" and runs["1"].data.metrics["best_val_accuracy"] == 0.5
    assert runs["2"].info.status == "RUNNING"  # another worker's trial, in progress

    restarted.start_trial("0", {"learning_rate": 0.01}, {"tune.tuner_id": "tuner0"})  # trial 0 again
    restarted.end_trial("0", "COMPLETED", {"best_val_accuracy": 0.7})
    oracle.trials["0"] = trial("0", "COMPLETED", 0.7)
    oracle.end_order.append("0")
    chief = SweepRecorder(experiment, killed.parent_run_id)
    records = collect_trials(chief, oracle)
    assert [r.trial_id for r in records] == ["1", "0"]
    assert chief.trial_runs["0"] == restarted.trial_runs["0"] != runs["0"].info.run_id  # the rerun, not the killed
