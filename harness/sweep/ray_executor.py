"""The Ray Tune executor of a sweep: the Optuna searcher, ASHA as a Tune scheduler, the
driver-side callback, and one stage run as a fresh Tuner.

A stage never restores Tune's experiment snapshot: the pending trials come from the plan and
the records (a grid), or from ``optuna.db`` reconciled with the records (a search), and each
trial continues from its own ``trials/<name>/state.pt``. Tune's checkpoints serve one thing:
a trial whose worker process dies is restarted from its last one, at most
``--max-failures`` times (``FailureConfig``); a trial that fails by itself (an exception, a
diverged loss) writes its record and is not retried.

Imported only by the Ray executor (this module imports Ray at the top).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from harness.errors import UserError
from harness.job.records import read_json
from harness.sweep.faults import fault
from harness.sweep.folder import Say, Sweep
from harness.sweep.sampler import SpaceSampler
from harness.sweep.study import (finished, make_rungs, rebuild_rungs, reconcile, running_trial, search_name,
                                 search_trial, tell_record)
from harness.sweep.trainable import describe_result, driver_record, execute_trial, ray_trainable, trial_from_config


class StudySearcher(Searcher):
    """Hands Tune the search's trials: first those a killed driver left RUNNING in optuna.db
    (same number, same parameters), then new ones asked from the study. Outcomes are told by
    `SweepCallback` from the records, once each record exists."""

    def __init__(self, study, sampler: SpaceSampler, pending: list[int], root: str):
        super().__init__()
        self.study, self.sampler, self.pending, self.root = study, sampler, list(pending), root

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.pending:
            ot = running_trial(self.study, self.pending.pop(0))
        else:
            ot = self.study.ask()
            fault("study_ask", self.root)
        trial = search_trial(self.sampler, ot).to_json()
        return {"options": trial["options"], "optuna_number": ot.number, "params": trial["search"]["params"]}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # told by SweepCallback, from the record

    def save(self, checkpoint_path: str) -> None:
        pass  # optuna.db is the searcher's state; Tune's experiment snapshot is never restored

    def restore(self, checkpoint_path: str) -> None:
        pass


class RungScheduler(FIFOScheduler):
    """ASHA (`harness.sweep.asha.Rungs`, keyed by trial name) as a Tune scheduler; remembers the
    report that stopped each trial, whose record ends there."""

    def __init__(self, rungs):
        super().__init__()
        self.rungs = rungs
        self.stopped: dict[str, dict[str, Any]] = {}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        name = tune_trial_name(trial)
        if name not in self.stopped and self.rungs.decide(name, result):
            self.stopped[name] = dict(result)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


class SweepCallback(Callback):
    """Driver side: one line per trial start/end; the record of a trial that could not write its
    own (stopped by ASHA: ``stopped``; a worker that died more than --max-failures times:
    ``failed``); and, in a search, the outcome told to Optuna once the record exists."""

    def __init__(self, sweep: Sweep, plan: dict[str, dict[str, Any]], scheduler: RungScheduler | None = None,
                 study=None):
        self.sweep, self.ctx, self.plan, self.scheduler, self.study = sweep, sweep.ctx, plan, scheduler, study

    def _say(self, line: str) -> None:
        print(f"[{self.ctx.name}] {line}", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._say(f"start {trial}")
        fault("trial_start", self.ctx.root)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._say(f"restart {trial}: its worker died ({trial.num_failures} of at most "
                  f"{self.sweep.resources.max_failures} restarts); it continues from its last checkpoint")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        fault("driver_report", self.ctx.root)

    def on_trial_complete(self, iteration, trials, trial, **info):
        name = str(trial)
        if not self.ctx.record_path(name).exists() and self.scheduler and name in self.scheduler.stopped:
            stop = self.scheduler.stopped[name]
            driver_record(self.ctx, self._trial(trial), "stopped", self.scheduler.rungs.reason(stop),
                          upto_epoch=stop.get("epoch"))
        self._finish(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        if not self.ctx.record_path(str(trial)).exists():
            driver_record(self.ctx, self._trial(trial), "failed", _error_text(trial))
        self._finish(trial)

    def _trial(self, trial):
        return trial_from_config(trial.config, str(trial), self.plan)

    def _finish(self, trial) -> None:
        path = self.ctx.record_path(str(trial))
        if not path.exists():
            return  # interrupted: it resumes later
        record = read_json(path)
        if self.study is not None and "optuna_number" in trial.config:
            tell_record(self.study, int(trial.config["optuna_number"]), record, self.sweep.space.search,
                        self.ctx.root)
        self._say(describe_result(str(trial), record))
        fault("trial_end", self.ctx.root)


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None)
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()] if path and Path(path).exists() \
        else []
    last = lines[-1][:500] if lines else "its worker failed without a record (see the Ray trial folder)"
    return f"the trial's worker died {trial.num_failures} time(s) (at most --max-failures restarts): {last}"


# ------------------------------------------------------------------ one stage
_RAY_STARTED = False


def ray_init(sweep: Sweep) -> None:
    global _RAY_STARTED
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray 2.60 no longer hides the GPUs from a task given none; keep CPU trials off them (local cluster;
    # the trainable also does it for clusters started elsewhere)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no tables; our callback prints one line per trial
    _quiet_ray_loggers()
    address = sweep.resources.address
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local throw-away cluster: no token notice
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    else:
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    _RAY_STARTED = True
    _check_cluster_fits(sweep)


def _check_cluster_fits(sweep: Sweep) -> None:
    """A trial asking more than the whole cluster has would wait forever: refuse it now."""
    import ray

    have = ray.cluster_resources()
    res = sweep.resources
    for flag, want, kind in (("--cpus-per-trial", res.cpus_per_trial, "CPU"), ("--gpus-per-trial", res.gpus_per_trial,
                                                                              "GPU")):
        if want > have.get(kind, 0.0):
            raise UserError(f"{flag} {want:g}: the Ray cluster has {have.get(kind, 0.0):g} {kind}(s) in all, so no "
                            f"trial could ever start; lower {flag}" + ("" if res.address else
                                                                     " or join a bigger cluster with --address"))


class _DropKnown(logging.Filter):
    """Ray's own lines for events the sweep already reports (a failed trial has a record with its reason)."""

    KNOWN = ("Trial task failed for trial", "Trials did not complete", "Failed to fetch metrics for")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.KNOWN)


def _quiet_ray_loggers() -> None:
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown())


def ray_shutdown() -> None:
    global _RAY_STARTED
    if _RAY_STARTED:
        import ray

        ray.shutdown()
        _RAY_STARTED = False


def tune_trial_name(trial) -> str:
    """Tune trial names (and folder names) are the sweep's trial names."""
    config = trial.config
    if "trial" in config:
        return str(config["trial"])
    return search_name(int(config["optuna_number"]))


def ray_stage(sweep: Sweep, stage: str, say: Say) -> bool:
    """Run what is left of a stage; True when every trial of it has its record."""
    trials = sweep.stage_trials(stage)
    if trials is None:
        return _search_stage(sweep, say)
    pending = [t for t in trials if not sweep.has_record(t.name)]
    if pending:
        from ray import tune

        plan = {t.name: t.to_json() for t in trials}
        _fit(sweep, stage, plan, {"trial": tune.grid_search([t.name for t in pending])}, 1, say)
    return all(sweep.has_record(t.name) for t in trials)


def _search_stage(sweep: Sweep, say: Say) -> bool:
    s = sweep.space.search
    study = sweep.study()
    sampler = SpaceSampler(sweep.space)
    pending = reconcile(sweep.ctx, study, s, sampler, lambda trial: execute_trial(sweep.ctx, trial))
    rungs = make_rungs(s)
    if rungs is not None:
        pending = rebuild_rungs(rungs, sweep.ctx, study, s, sampler, pending)
    remaining = s.num_samples - finished(study)
    if remaining > 0:
        searcher = StudySearcher(study, sampler, pending, sweep.ctx.root)
        scheduler = RungScheduler(rungs) if rungs is not None else None
        _fit(sweep, "search", {}, {}, remaining, say, searcher=searcher, scheduler=scheduler, study=study)
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    return finished(study) >= s.num_samples and all(sweep.has_record(search_name(n)) for n in numbers)


def _fit(sweep: Sweep, stage: str, plan: dict[str, dict[str, Any]], param_space: dict[str, Any], num_samples: int,
         say: Say, searcher=None, scheduler=None, study=None) -> None:
    ray_init(sweep)
    from ray import tune

    res = sweep.resources
    resources = {"cpu": res.cpus_per_trial}
    if res.gpus_per_trial:
        resources["gpu"] = res.gpus_per_trial
    trainable = tune.with_resources(tune.with_parameters(ray_trainable, ctx=sweep.ctx, plan=plan), resources)
    storage = sweep.root / "ray"
    name = _experiment_name(storage, stage)
    if name != stage:
        say(f"[{sweep.name}] continuing stage {stage} (Ray folder {storage / name})")
    tuner = tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples,
                                    max_concurrent_trials=res.max_concurrent, reuse_actors=True,
                                    trial_name_creator=tune_trial_name, trial_dirname_creator=tune_trial_name),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  failure_config=tune.FailureConfig(max_failures=res.max_failures),
                                  callbacks=[SweepCallback(sweep, plan, scheduler, study)]))
    tuner.fit()


def _experiment_name(storage: Path, stage: str) -> str:
    """``<stage>``, or ``<stage>.2``, ``.3``, ... when an earlier driver already ran it (its folder is
    kept for TensorBoard; nothing is read back from it)."""
    name, n = stage, 1
    while (storage / name).exists():
        n += 1
        name = f"{stage}.{n}"
    return name
