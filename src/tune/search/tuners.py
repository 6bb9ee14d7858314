"""keras-tuner tuners that record each trial as an MLflow child run and report progress.

The recording is a mixin over keras-tuner's documented hooks (`on_search_begin`,
`on_trial_begin`, `on_epoch_end`, `on_trial_end`), each calling `super()`; the search itself
is keras-tuner's. `TUNERS` maps the config's `tuner.name` to a class; `tuner_plan` swaps in
a grid search for a space with too few points for it (see `tune.search.grid`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import keras
import keras_tuner as kt
import numpy as np

from tune import interrupts
from tune.data.pipeline import SplitRows
from tune.errors import ConfigError
from tune.model.hypermodel import phase_of
from tune.model.inference import predict_rows
from tune.model.space import continuation, space_points, trial_values, tuner_values
from tune.reports.artifacts import log_trial_artifacts
from tune.search.grid import GRID, GridSearch, TunerPlan, plan_tuner
from tune.search.memory import process_rss_mb, release_traced_gradients
from tune.tracking.recorder import SweepRecorder
from tune.tracking.records import TrialRecord
from tune.tracking.resume import TUNER_TAG

log = logging.getLogger(__name__)
IDLE_SECONDS = 1.0  # a worker's pause before asking the chief again after it had no trial to give
# Reloading a trial's best checkpoint for evaluation needs no optimizer state.
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")


class _NewModelRetracing(logging.Filter):
    """Drops TensorFlow's retracing warning: every trial builds a new model, so it is expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_NewModelRetracing())


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def describe(values: dict) -> str:
    """Hyperparameter values as `name=value` pairs, floats to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


class TrialTracking:
    """Mixin for a `keras_tuner.Tuner`: one MLflow child run per trial, with its figures.

    Call `track(...)` before `search`. After it, `records` holds one `TrialRecord` per ended
    trial, in the order they ended.
    """

    def track(
        self,
        recorder: SweepRecorder,
        rows: SplitRows,
        class_names: List[str],
        folder: Path,
        records=(),
        worker: Optional[str] = None,
    ) -> None:
        """Set where trials are recorded and what their validation report is computed on.

        Args:
            recorder: writes the MLflow runs.
            rows: the decoded images and the validation split's rows and labels, in file order.
            class_names: label i is `class_names[i]`.
            folder: the tuner project folder; trial files go to `folder/trials/<id>/`.
            records: trials that ended before a resume, in the order they ended.
            worker: this worker's tuner id in chief/worker mode (each trial run is tagged
                `tune.tuner_id` with it); None in a single process.
        """
        self.recorder, self.rows, self.class_names, self.folder = recorder, rows, class_names, folder
        self.validation_labels = rows.validation_labels  # int32 (n,)
        self.records: List[TrialRecord] = list(records)
        self.worker, self._asked = worker, False

    def pre_create_trial(self):
        super().pre_create_trial()
        if self.worker and self._asked:  # the chief had no trial for us yet (IDLE): ask less often
            time.sleep(IDLE_SECONDS)
        self._asked = True

    def on_search_begin(self):
        super().on_search_begin()
        self._search_started, self._trial_seconds = time.monotonic(), []

    def on_trial_begin(self, trial):
        interrupts.check()  # an interrupt swallowed during the last trial stops the search here
        super().on_trial_begin(trial)
        self._asked = False
        self._take_trained()  # none left over from a trial that ended without on_trial_end
        self._trial_started = time.monotonic()
        self._epochs = {"head": 0, "fine_tune": 0}
        self._history: Dict[str, List[float]] = {}
        self._first_epoch: Optional[int] = None
        values = trial_values(trial.hyperparameters)
        tags = {TUNER_TAG: self.worker} if self.worker else {}
        self.recorder.start_trial(trial.trial_id, {**values, **tuner_values(trial.hyperparameters)}, tags)
        follows = continuation(trial.hyperparameters)
        after = f" (continues trial {follows.trial_id} from epoch {follows.initial_epoch})" if follows else ""
        log.info("trial %s started%s: %s | %s", self._counter(trial), after, describe(values), self._timing())

    def on_epoch_end(self, trial, model, epoch, logs=None):
        super().on_epoch_end(trial, model, epoch, logs=logs)
        self._epochs[phase_of(model)] += 1
        self._first_epoch = epoch if self._first_epoch is None else self._first_epoch
        for key, value in (logs or {}).items():
            self._history.setdefault(key, []).append(float(value))
        self.recorder.log_epoch(trial.trial_id, epoch, logs or {})

    def on_trial_end(self, trial):
        seconds = time.monotonic() - self._trial_started
        try:
            super().on_trial_end(trial)  # the oracle scores the trial here (NaN -> INVALID)
        finally:
            release_traced_gradients()  # else every trial's weights stay in memory
            self._record(self.oracle.get_trial(trial.trial_id), seconds, self._take_trained())

    def _take_trained(self):
        """The hypermodel's trained model if it holds the trial's checkpoint weights (else None), forgotten there."""
        take = getattr(self.hypermodel, "take_trained_model", None)
        return take() if take else None

    def _record(self, trial, seconds: float, trained: Optional[keras.Model] = None) -> None:
        """Log the ended trial's summary, figures and status, and one progress line."""
        record = TrialRecord.from_trial(trial, self._epochs["head"], self._epochs["fine_tune"], seconds)
        self.records.append(record)
        self._trial_seconds.append(seconds)
        fine_tune_start = record.epochs_head if record.epochs_fine_tune else None
        log_trial_artifacts(
            self.recorder,
            trial.trial_id,
            self.folder / "trials" / trial.trial_id,
            self._history,
            fine_tune_start,
            self._evaluate(trial, record, trained),
            self.class_names,
            self._first_epoch or 0,
        )
        summary = {
            f"best_{self.oracle.objective.name}": record.score,
            "trial_seconds": seconds,
            "epochs_head": record.epochs_head,
            "epochs_fine_tune": record.epochs_fine_tune,
            "process_rss_mb": process_rss_mb(),  # MB resident now: the sweep's memory curve
        }
        self.recorder.end_trial(trial.trial_id, trial.status, summary, trial.message or "")
        result = f"{self.oracle.objective.name} {record.score:.4f}" if record.completed else record.reason
        log.info(
            "trial %s %s in %s: %s | %s", self._counter(trial), trial.status, clock(seconds), result, self._timing()
        )

    def _evaluate(
        self, trial, record: TrialRecord, trained: Optional[keras.Model] = None
    ) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(true, predicted) validation labels of the trial's best checkpoint; None if it did not complete.

        `trained`: the model the trial trained, when it already holds the checkpoint's
        weights (`TransferHyperModel.take_trained_model`); else the checkpoint is loaded.
        """
        if not record.completed:
            return None
        model = trained if trained is not None else self.load_model(trial)
        probabilities = self.hypermodel.validation_probabilities(model, trial.hyperparameters)  # (n, classes)
        if probabilities is None:
            probabilities = predict_rows(model, self.rows.images, self.rows.validation_rows)
        return self.validation_labels, np.argmax(probabilities, axis=1)

    def _counter(self, trial) -> str:
        """`<id> (k/N)`: keras-tuner's trial id, then its place k of N (`?` without max_trials)."""
        total = getattr(self.oracle, "max_trials", None)
        return f"{trial.trial_id} ({int(trial.trial_id) + 1}/{total or '?'})"

    def _timing(self) -> str:
        """Elapsed time, an ETA from the mean trial time, and the best objective so far."""
        elapsed = time.monotonic() - self._search_started
        parts = [f"elapsed {clock(elapsed)}"]
        total = getattr(self.oracle, "max_trials", None)
        if total and self._trial_seconds and not self.worker:  # a worker runs only some of the trials
            remaining = max(total - len(self.records), 0)
            parts.append(f"ETA {clock(remaining * sum(self._trial_seconds) / len(self._trial_seconds))}")
        done = [r for r in self.records if r.completed]  # a worker's oracle proxy lists no trials
        if done:
            pick = max if self.oracle.objective.direction == "max" else min
            best = pick(done, key=lambda r: r.score)
            parts.append(f"best {self.oracle.objective.name} {best.score:.4f} (trial {best.trial_id})")
        return ", ".join(parts)


class TrackedRandomSearch(TrialTracking, kt.RandomSearch):
    """`keras_tuner.RandomSearch`, each trial an MLflow child run."""


class TrackedBayesianOptimization(TrialTracking, kt.BayesianOptimization):
    """`keras_tuner.BayesianOptimization`, each trial an MLflow child run."""


class TrackedHyperband(TrialTracking, kt.Hyperband):
    """`keras_tuner.Hyperband`, each trial an MLflow child run.

    Hyperband gives each trial an epoch budget; a trial that continues an earlier one gets
    `initial_epoch` and that trial's best checkpoint, and `TransferHyperModel.fit` runs only
    the epochs left, in the phase the earlier round ended in.
    """


class TrackedGridSearch(TrialTracking, GridSearch):
    """`tune.search.grid.GridSearch`, each trial an MLflow child run; chosen by `tuner_plan`, not by name."""


TUNERS = {
    "random": TrackedRandomSearch,
    "bayesian": TrackedBayesianOptimization,
    "hyperband": TrackedHyperband,
}
CLASSES = {**TUNERS, GRID: TrackedGridSearch}  # every class `make_tuner` makes


def accepted_options(cls: type) -> Set[str]:
    """The keyword arguments a keras-tuner tuner class takes, through its whole `__init__` chain."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names: Set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {p.name for p in inspect.signature(init).parameters.values() if p.kind in kinds}
    return names - {"self"}


def option_defaults(cls: type) -> Dict[str, object]:
    """The default of each keyword argument of a tuner class, the most derived `__init__` first."""
    defaults: Dict[str, object] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            for p in inspect.signature(init).parameters.values():
                if p.default is not inspect.Parameter.empty:
                    defaults.setdefault(p.name, p.default)
    return defaults


def tuner_plan(name: str, options: dict, hp: kt.HyperParameters) -> TunerPlan:
    """Tuner `name` with `options` (`tuner.options`), or a grid when the declared space `hp` is too small for it.

    It depends on its arguments alone, so the same config always gets the same tuner (a
    resumed search keeps its tuner class).
    """
    return plan_tuner(name, {**option_defaults(TUNERS[name]), **options}, space_points(hp))


def split_options(name: str, options: dict) -> Tuple[dict, List[str]]:
    """(the options tuner `name` takes, the keys only other tuners take).

    A preset written for one tuner (the quickstart's `max_trials`) then also runs with
    another (Hyperband sets its own number of trials); keys no tuner takes are refused
    earlier, by `tune.config.checks`.
    """
    accepted = accepted_options(CLASSES[name])
    return {k: v for k, v in options.items() if k in accepted}, sorted(k for k in options if k not in accepted)


def tuner_seed(seed: int) -> int:
    """The seed keras-tuner's oracle gets for the top-level `seed` (>= 0): `seed + 1`.

    keras-tuner's oracles take a seed of 0 for none (`seed or random.randint(1, 10000)` in
    keras-tuner 1.4's `Oracle.__init__`) and then draw their trials from Python's global
    random state, so a sweep with the default `seed=0` searched other hyperparameters
    whenever anything before it had used that state differently (a rerun, or the same
    sweep with the activation cache off). Shifting by one keeps every top-level seed,
    0 included, a fixed and distinct tuner seed.
    """
    return seed + 1


def make_tuner(
    plan: TunerPlan, hypermodel, objective: kt.Objective, folder: Path, options: dict, seed: int, resume: bool
) -> TrialTracking:
    """The tuner `plan` names, with its project in `folder/keras_tuner`.

    Args:
        plan: from `tuner_plan`: a key of `TUNERS`, or a grid over its `points`.
        hypermodel: the search space and recipe.
        objective: what the tuner optimises, with its direction.
        folder: the tuner project folder (see `tune.search.project`).
        options: more keyword arguments of the tuner class (`tuner.options`); those only
            other tuners take are left out, with a warning.
        seed: the top-level seed; the tuner gets `tuner_seed(seed)` unless `options` has
            a seed of its own.
        resume: True reloads the project's trials; False starts it empty.

    Raises:
        ConfigError: `options` do not fit the tuner class.
    """
    name = plan.name
    kept, dropped = split_options(name, {"seed": tuner_seed(seed), **options})
    if name == GRID:  # the grid's own budget; the options of the tuner it replaces are dropped quietly
        kept["max_trials"], dropped = plan.points, []
    for key in dropped:
        log.warning("tuner.options.%s does not apply to tuner '%s'; left out", key, name)
    try:
        return CLASSES[name](
            hypermodel=hypermodel,
            objective=objective,
            directory=str(folder),
            project_name="keras_tuner",
            overwrite=not resume,
            distribution_strategy=getattr(hypermodel, "strategy", None),  # tuner.distribution_strategy
            **kept,
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"tuner.options={kept} do not fit tuner '{name}': {err}") from None


@contextlib.contextmanager
def failed_trials_untraced() -> Iterator[None]:
    """Inside, keras-tuner does not print the traceback of each failed trial to stderr.

    `tune` keeps it instead in the trial's MLflow run (tag `tune.error`) and shows the
    first one when failures in a row stop the search. keras-tuner 1.4.8 has one switch for
    it, its `config.DEBUG`, with no public alias.
    """
    from keras_tuner.src import config

    printing, config.DEBUG = config.DEBUG, False
    try:
        yield
    finally:
        config.DEBUG = printing


def completed_best(oracle) -> Optional[kt.engine.trial.Trial]:
    """The best COMPLETED trial with a score, or None.

    keras-tuner's own `get_best_trials` pads its answer with failed trials when fewer
    trials completed than asked for; this never returns one.
    """
    done = [t for t in oracle.trials.values() if t.status == "COMPLETED" and t.score is not None]
    if not done:
        return None
    pick = max if oracle.objective.direction == "max" else min
    return pick(done, key=lambda t: t.score)


def consecutive_failures(oracle) -> int:
    """How many trials failed in a row at the end of `oracle.end_order`."""
    count = 0
    for trial_id in reversed(oracle.end_order):
        if oracle.trials[trial_id].status != "FAILED":
            break
        count += 1
    return count


def stop_workers_after_failures(oracle) -> None:
    """Make the chief's `oracle` answer its workers STOPPED, not an error, once too many trials failed in a row.

    In one process keras-tuner ends a search that hit `max_consecutive_failed_trials` by
    raising from `Oracle.end_trial`. A chief's oracle raises the same inside the worker's
    gRPC call: that worker dies, the trial stays ongoing and the chief waits for it for
    ever. Here the failing trial ends normally instead and `oracle.stopped_after_failures`
    keeps the `failure_report` (None until then); from then on every worker that asks for a
    trial is told STOPPED (a restarted worker still gets its unfinished trial back), so the
    chief's search returns once the trials still running end.
    """
    create_trial = oracle.create_trial
    oracle.stopped_after_failures = None

    def note_failures() -> None:  # replaces Oracle._check_consecutive_failures, which raises
        if oracle.stopped_after_failures is None and search_failed(oracle):
            oracle.stopped_after_failures = failure_report(oracle)

    def create_or_stop(tuner_id: str):
        if tuner_id in oracle.ongoing_trials or oracle.stopped_after_failures is None:
            return create_trial(tuner_id)
        oracle.tuner_ids.discard(tuner_id)  # as keras-tuner does for the STOPPED trial it hands out
        return kt.engine.trial.Trial(oracle.get_space(), status=kt.engine.trial.TrialStatus.STOPPED)

    oracle._check_consecutive_failures = note_failures
    oracle.create_trial = create_or_stop


def search_failed(oracle) -> bool:
    """Whether the last `max_consecutive_failed_trials` trials `oracle` ended all failed."""
    return consecutive_failures(oracle) >= oracle.max_consecutive_failed_trials


def failure_report(oracle) -> str:
    """Why the search stopped: how many trials failed in a row, and the first of them's error."""
    limit = oracle.max_consecutive_failed_trials
    first = oracle.trials[oracle.end_order[-consecutive_failures(oracle)]]
    message = (first.message or "").strip().splitlines()[-12:]
    return "\n".join(
        [
            f"{limit} trials failed in a row (tuner.options.max_consecutive_failed_trials={limit}); "
            "the search stopped.",
            f"The first of them, trial {first.trial_id} ({trial_values(first.hyperparameters)}), failed with:",
            *("    " + line for line in message),
        ]
    )
