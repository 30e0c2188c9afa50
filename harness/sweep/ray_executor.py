"""The Ray Tune executor of a sweep: the Optuna searcher, the driver-side callback, and one
stage run as a Tuner (restored when Tune's experiment folder allows it).

Imported only by the Ray executor (this module imports Ray at the top).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.search.optuna import OptunaSearch

from harness.job.records import write_json_atomic
from harness.sweep.folder import Say, Sweep, set_metric_names
from harness.sweep.sampler import SpaceSampler
from harness.sweep.trainable import (SweepContext, describe_result, failed_record, ray_trainable, saved_history,
                                     trial_from_config)


class SweepSearcher(OptunaSearch):
    """OptunaSearch that (1) puts the Optuna trial number in each config, which names the trial
    (``s0007``), and (2) tells Optuna FAIL for an errored trial and PRUNED for one stopped
    early, never a partial value as COMPLETE (the stock searcher would tell the last report)."""

    def suggest(self, trial_id: str):
        params = super().suggest(trial_id)
        if params is not None and trial_id in self._ot_trials:
            params["optuna_number"] = self._ot_trials[trial_id].number
        return params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error or not (result or {}).get("final"):
            result = None
        super().on_trial_complete(trial_id, result=result, error=error)


def make_searcher(sweep) -> SweepSearcher:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = sweep.space.search
    modes = ["max" if d == "maximize" else "min" for d in s.directions]
    searcher = SweepSearcher(space=SpaceSampler(sweep.space), metric=s.objective if s.multi else s.objective[0],
                             mode=modes if s.multi else modes[0], sampler=sweep.make_sampler(),
                             study_name=sweep.name, storage=optuna.storages.RDBStorage(sweep.storage_url()))
    set_metric_names(searcher._ot_study, s.objective)
    return searcher


class SweepCallback(Callback):
    """Driver side: one line per trial start/end, and a record for trials that could not write one
    (stopped early by ASHA: ``status: stopped``; a worker that died: ``status: failed``)."""

    def __init__(self, ctx: SweepContext, plan: dict[str, dict[str, Any]]):
        self.ctx = ctx
        self.plan = plan

    def _say(self, line: str) -> None:
        print(f"[{self.ctx.name}] {line}", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._say(f"start {trial}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        name = str(trial)
        path = self.ctx.record_path(name)
        last = trial.last_result or {}
        if not path.exists() and not last.get("final"):
            epoch = last.get("epoch")
            reason = (f"stopped early by the scheduler after {epoch} epochs (top1 {last.get('top1')})"
                      if epoch is not None else "stopped before its first report")
            self._write(trial, "stopped", reason)
        self._report(name)

    def on_trial_error(self, iteration, trials, trial, **info):
        name = str(trial)
        if not self.ctx.record_path(name).exists():
            self._write(trial, "failed", _error_text(trial))
        self._report(name)

    def _report(self, name: str) -> None:
        from harness.job.records import read_json

        path = self.ctx.record_path(name)
        if path.exists():
            self._say(describe_result(name, read_json(path)))

    def _write(self, trial, status: str, reason: str) -> None:
        name = str(trial)
        try:
            spec = trial_from_config(trial.config, name, self.plan)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: no record for trial {name}: {exc}", file=sys.stderr)
            return
        history = saved_history(self.ctx.trial_dir(name) / "state.pt")
        record = failed_record(spec, spec.options, None, RuntimeError(reason), history, 0.0)
        record.update(status=status, error=reason, traceback=None, trial_id=name, sweep=self.ctx.name,
                      executor=self.ctx.executor, stage=spec.stage, options=spec.options, resumed=[],
                      written_by="driver", time=time.strftime("%Y-%m-%dT%H:%M:%S"))
        if spec.search is not None:
            record["search"] = {**(self.ctx.search or {}), **spec.search}
        write_json_atomic(self.ctx.record_path(name), record)


def _error_text(trial) -> str:
    for attr in ("error_file",):
        path = getattr(trial, attr, None)
        if path and Path(path).exists():
            lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
            if lines:
                return lines[-1][:500]
    return "the trial's worker failed without a record (see the Ray trial folder)"


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
    return f"s{int(config['optuna_number']):04d}"


def ray_stage(sweep: Sweep, stage: str, say: Say) -> bool:
    trials = sweep.stage_trials(stage)
    if trials is not None and all(sweep.has_record(t.name) for t in trials):
        return True
    searched = len(list(sweep.ctx.records.glob("s[0-9][0-9][0-9][0-9].json")))
    if trials is None and searched >= sweep.space.search.num_samples:
        return True
    ray_init(sweep)
    from ray import tune

    res = sweep.resources
    plan = {t.name: t.to_json() for t in trials or []}
    resources = {"cpu": res.cpus_per_trial}
    if res.gpus_per_trial:
        resources["gpu"] = res.gpus_per_trial
    trainable = tune.with_resources(tune.with_parameters(ray_trainable, ctx=sweep.ctx, plan=plan), resources)
    storage = sweep.root / "ray"
    exp = storage / stage
    if tune.Tuner.can_restore(str(exp)):
        say(f"[{sweep.name}] resuming stage {stage} from {exp}")
        tuner = tune.Tuner.restore(str(exp), trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
    else:
        shutil.rmtree(exp, ignore_errors=True)
        search_alg = scheduler = None
        num_samples = 1
        if trials is None:
            s = sweep.space.search
            search_alg = make_searcher(sweep)
            num_samples = s.num_samples
            param_space: dict[str, Any] = {}
            if s.asha:
                from ray.tune.schedulers import ASHAScheduler

                scheduler = ASHAScheduler(time_attr="epoch", metric=s.objective[0],
                                          mode="max" if s.directions[0] == "maximize" else "min", **s.asha)
        else:
            pending = [t.name for t in trials if not sweep.has_record(t.name)]
            param_space = {"trial": tune.grid_search(pending)}
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
                                        max_concurrent_trials=res.max_concurrent, reuse_actors=True,
                                        trial_name_creator=tune_trial_name, trial_dirname_creator=tune_trial_name),
            run_config=tune.RunConfig(name=stage, storage_path=str(storage), verbose=0,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      failure_config=tune.FailureConfig(max_failures=0),
                                      callbacks=[SweepCallback(sweep.ctx, plan)]))
    results = tuner.fit()
    if trials is not None:
        return all(sweep.has_record(t.name) for t in trials)
    names = [Path(r.path).name for r in results]
    return len(names) >= sweep.space.search.num_samples and all(sweep.has_record(n) for n in names)
