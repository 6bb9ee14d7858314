"""One sweep, start to finish: checks, data, search, test evaluation, registered model.

`run_sweep` is the pure core behind `python -m tune`: it takes typed `Settings`, returns a
`SweepResult`, and tests call it directly. It is the last function that sees `Settings`;
below it, functions take the values they need.

    prepare (tune.search.prepare)   check the config, generate data, fetch weights
    load_search_data                 scan and decode both folders; training and validation pipelines
    open_project                     the search's tuner project, locked; resumed if it exists
    search                           keras-tuner, each trial an MLflow child run (tune.search.tuners)
    finish (tune.search.outcome)     best completed trial -> baseline check -> refit on training +
                                     validation (tune.search.refit) -> test folder -> Model Registry
    prune                            delete the other trials' checkpoints (tuner.keep_checkpoints=best)

In chief/worker mode (`tune.search.roles`) the chief runs all of it, but its search serves
keras-tuner's oracle instead of training: its workers (`tune.search.worker`) train the trials.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Union

import keras
import keras_tuner as kt

from tune import interrupts
from tune.config.settings import Settings
from tune.data.pipeline import SearchData, load_search_data
from tune.errors import SearchFailedError
from tune.model.base_init import describe
from tune.model.recipe import OBJECTIVES, on_training_images
from tune.model.space import base_names, declared
from tune.reports.data_report import log_data_report, log_data_summary
from tune.search.caches import search_hypermodel
from tune.search.grid import TunerPlan
from tune.search.memory import frozen_heap
from tune.search.outcome import SweepResult, already_finished, finish
from tune.search.prepare import prepare, search_definition, training_objective_warning
from tune.search.project import TunerProject, delete_checkpoints, open_project
from tune.search.refit import RefitPlan
from tune.search.roles import Role, exported, resolve_role
from tune.search.tuners import (
    completed_best,
    failed_trials_untraced,
    failure_report,
    make_tuner,
    search_failed,
    stop_workers_after_failures,
    tuner_plan,
)
from tune.search.worker import WorkerResult, run_worker
from tune.tracking import resume
from tune.tracking.recorder import SweepRecorder
from tune.tracking.store import open_store

log = logging.getLogger(__name__)


def run_sweep(settings: Settings) -> Union[SweepResult, WorkerResult]:
    """Search the space, record every trial, evaluate and register the best completed one.

    Rerunning the same search resumes it: trials that ended are kept, the one interrupted
    runs again, and MLflow records go on in the same parent run. A search that already
    finished is reported, not run again (`tuner.overwrite=true` starts it afresh).

    In chief/worker mode (`tune.search.roles`: `tuner.distributed.*` or keras-tuner's
    `KERASTUNER_*` variables) the chief does all of the above but train: it serves the
    oracle to its workers, which train the trials (`tune.search.worker`); a worker returns
    a `WorkerResult` when the oracle has no trial left.

    Raises:
        ConfigError, DataError, WeightsUnavailableError: before any run is recorded, or
            raised inside a trial, which stops the search at once (the run ends FAILED).
        ProjectBusyError: the same search is running in another process (a worker: another
            worker with the same tuner id).
        DistributedError: a worker found no chief within `tuner.distributed.wait_seconds`.
        SearchFailedError: no trial completed (nothing is registered), or too many failed
            in a row (the first failure shown).
        KeyboardInterrupt: Ctrl-C or SIGTERM; the runs end KILLED.
    """
    with exported(resolve_role(settings.tuner.distributed, os.environ)) as role:
        keras.utils.set_random_seed(settings.seed)
        objective = OBJECTIVES[settings.tuner.objective]
        size = prepare(settings, objective)
        plan = tuner_plan(settings.tuner.name, settings.tuner.options, declared(settings.search))
        if plan.note:
            log.info(plan.note)
        data = load_search_data(settings.data, size, settings.training.augment, Path(settings.cache_dir))
        log_data_summary(data)
        flat = search_definition(settings, data.fingerprint, plan.name)
        if role.worker:
            return run_worker(settings, role, objective, size, data, plan, flat)
        fresh = settings.tuner.overwrite
        with open_project(Path(settings.tuner_dir), flat, fresh=fresh, chief=role.chief) as project:
            return _run(settings, objective, size, data, project, plan, role)


def _run(
    settings: Settings,
    objective: kt.Objective,
    size: tuple,
    data: SearchData,
    project: TunerProject,
    plan: TunerPlan,
    role: Role,
):
    hypermodel, cache_tags, cache_metrics = search_hypermodel(settings, objective, size, data, project.folder / "bases")
    tracking = settings.tracking
    experiment_id = open_store(tracking.uri, tracking.experiment_name, tracking.artifact_location)
    parent = resume.previous_run(project.parent_run_id, project.key)
    tuner_cfg = settings.tuner
    tuner = make_tuner(
        plan, hypermodel, objective, project.folder, tuner_cfg.options, settings.seed, parent is not None
    )
    if parent is not None and parent.info.status == "FINISHED":
        if role.chief:  # its workers have nothing to do
            project.close_oracle()
        return already_finished(tuner, parent, tracking.registered_model_name)
    if parent is None:
        recorder, records = _start_run(settings, objective, experiment_id, project, data, plan), []
    else:
        recorder, records = resume.reopen(parent, tuner.oracle, objective.name)
    for key, value in cache_tags.items():
        recorder.client.set_tag(recorder.parent_run_id, key, value)
    recorder.log_metrics(recorder.parent_run_id, cache_metrics)
    if role.chief:
        stop_workers_after_failures(tuner.oracle)
        _announce(recorder, project, role.address)
    try:
        tuner.track(recorder, data.rows, data.class_names, project.folder, records)
        started = time.monotonic()
        _search(tuner, data)
        recorder.log_metrics(recorder.parent_run_id, {"search_seconds": time.monotonic() - started})
        if role.chief:  # the workers recorded the trials
            project.close_oracle()
            tuner.records = resume.collect_trials(recorder, tuner.oracle)
        interrupts.check()
        refit = RefitPlan(settings.data.batch_size, settings.training.augment, settings.data.seed)
        result = finish(tuner, recorder, data, tracking, tuner_cfg.baseline_margin, refit if tuner_cfg.refit else None)
        if tuner_cfg.keep_checkpoints == "best":
            _prune(tuner, recorder)
    except BaseException as err:  # record how it ended, then let it propagate
        recorder.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        err.recorded_run_id = recorder.parent_run_id  # the command keeps its log folder
        raise
    recorder.finish("FINISHED")
    result.resumed = parent is not None
    return result


def _announce(recorder: SweepRecorder, project: TunerProject, address: str) -> None:
    """Record the chief's sweep run and oracle `address` (`ip:port`), which its workers wait for.

    Called once the caches are filled and the run is open, so a worker that reads the record
    finds both ready.
    """
    recorder.client.set_tag(recorder.parent_run_id, "tune.oracle", address)
    project.set_parent_run(recorder.parent_run_id, address)
    log.info("chief: serving the oracle at %s for sweep run %s", address, recorder.parent_run_id)


def _prune(tuner, recorder: SweepRecorder) -> None:
    """Delete the checkpoints of every trial but the best; log and record how much that freed."""
    best = completed_best(tuner.oracle).trial_id
    others = [Path(tuner.get_trial_dir(t)) for t in tuner.oracle.trials if t != best]
    freed = delete_checkpoints(others) / 2**20
    recorder.log_metrics(recorder.parent_run_id, {"checkpoints_deleted_mb": freed})
    log.info(
        "deleted the checkpoints of %d trial(s) other than the best (trial %s), %.0f MB; "
        "tuner.keep_checkpoints=all keeps them",
        len(others),
        best,
        freed,
    )


def _start_run(
    settings: Settings,
    objective: kt.Objective,
    experiment_id: str,
    project: TunerProject,
    data: SearchData,
    plan: TunerPlan,
) -> SweepRecorder:
    """A new parent run for the search, with its params, tags and the data report."""
    tags = {"tune.base_init": describe(settings.model.weights), "tune.project": project.key}
    tags["tune.space_points"] = "unbounded" if plan.points is None else str(plan.points)
    if plan.note:
        tags["tune.tuner"] = f"{plan.name}: {plan.note}"
    if on_training_images(objective):
        tags["tune.objective_warning"] = training_objective_warning(objective.name)
    bases = "+".join(base_names(settings.search.base_model))
    name = f"sweep {bases} {time.strftime('%Y-%m-%d %H:%M:%S')}"
    recorder = SweepRecorder.start(
        experiment_id, name, settings.params(), settings.resolved_config, settings.overrides, tags
    )
    project.set_parent_run(recorder.parent_run_id)
    log_data_report(recorder, data, settings.data.root)
    return recorder


def _search(tuner, data: SearchData) -> None:
    """`tuner.search`; keras-tuner's stop after failures in a row becomes a `SearchFailedError`."""
    oracle = tuner.oracle
    try:
        with failed_trials_untraced(), frozen_heap():  # each failure is in its trial run; the first is shown below
            tuner.search(data.train, validation_data=data.validation, verbose=0)  # our log lines instead
    except RuntimeError:
        if not search_failed(oracle):
            raise
        raise SearchFailedError(failure_report(oracle)) from None
    stopped = getattr(oracle, "stopped_after_failures", None)  # a chief's oracle stops its workers instead
    if stopped:
        raise SearchFailedError(stopped)
