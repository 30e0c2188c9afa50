"""The serial executor: a sweep's trials one after another in this process, without Ray,
giving the same records as the Ray executor."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from harness.sweep.faults import fault
from harness.sweep.space import Trial
from harness.sweep import trainable
from harness.sweep.trainable import SweepContext, TrialStopped, describe_result, final_metrics


class SerialExecutor:
    """Runs trials one after another in this process (no Ray): same records, same numbers."""

    def __init__(self, ctx: SweepContext, say: Callable[[str], None] = print):
        self.ctx = ctx
        self.say = say

    def run(self, trial: Trial, rungs=None) -> dict[str, Any]:
        """Run one trial; with ``rungs`` (`harness.sweep.asha.Rungs`) its reports may stop it early."""
        import torch

        from harness.train.memory import release_cached_memory

        done = self.ctx.record_path(trial.name).exists()

        def early_stop(metrics: dict[str, Any], state_path: Path | None) -> None:
            if rungs.decide(trial.name, metrics):
                raise TrialStopped(rungs.reason(metrics))

        emit = early_stop if rungs is not None else None
        threads = torch.get_num_threads()
        torch.set_num_threads(self.ctx.threads)
        try:
            if not done:
                self.say(f"[{self.ctx.name}] start {trial.name}")
                fault("trial_start", self.ctx.root)
            record = trainable.execute_trial(self.ctx, trial, emit)  # looked up per call: tests patch it
        finally:
            torch.set_num_threads(threads)
            release_cached_memory()
        if rungs is not None and record.get("status") == "ok" and not done:
            rungs.decide(trial.name, final_metrics(record))  # the final report, as Tune sees it
        if not done:
            self.say(f"[{self.ctx.name}] {describe_result(trial.name, record)}")
            fault("trial_end", self.ctx.root)
        return record
