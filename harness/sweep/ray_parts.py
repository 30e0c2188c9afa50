"""The Ray Tune pieces of a sweep: the Optuna searcher and the driver-side callback.

Imported only by the Ray executor (this module imports Ray at the top).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.search.optuna import OptunaSearch

from harness.records import write_json_atomic
from harness.sweep.space import SpaceSampler
from harness.sweep.trainable import SweepContext, describe_result, failed_record, saved_history, trial_from_config


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

    from harness.sweep.runner import _set_metric_names

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = sweep.space.search
    modes = ["max" if d == "maximize" else "min" for d in s.directions]
    searcher = SweepSearcher(space=SpaceSampler(sweep.space), metric=s.objective if s.multi else s.objective[0],
                             mode=modes if s.multi else modes[0], sampler=sweep.make_sampler(),
                             study_name=sweep.name, storage=optuna.storages.RDBStorage(sweep.storage_url()))
    _set_metric_names(searcher._ot_study, s.objective)
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
        from harness.records import read_json

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
