"""Running a sweep: every unfinished stage through the chosen executor (Ray Tune, or serial
in-process), the interrupted and finished summaries.

The folder and its stages are `harness.sweep.folder`; the Ray executor is
`harness.sweep.ray_executor` (imported only when used).
"""
from __future__ import annotations

import sys
import time
from typing import Any

from harness.sweep.folder import Resources, Say, Sweep, resume_command
from harness.sweep.sampler import SpaceSampler
from harness.sweep.space import Trial
from harness.sweep.trainable import SerialExecutor, describe_result, objective_values

__all__ = ["Resources", "Sweep", "run_sweep", "resume_command"]



def run_sweep(sweep: Sweep, say: Say = print) -> int:
    """Run every unfinished stage; 0 when all trials have records, 130 when interrupted."""
    start = time.time()
    planned = f"{len(sweep.grid)} trials" if sweep.space.kind == "grid" else \
        f"{sweep.space.search.num_samples} Optuna trials" + (
            f" + the best {sweep.space.search.repeat_top} on seeds {sweep.space.search.repeat_seeds}"
            if sweep.space.search.repeat_top else "")
    say(f"[{sweep.name}] {sweep.space.kind}: {planned}; executor {sweep.resources.executor}; folder {sweep.root}")
    try:
        for stage in sweep.stages():
            if sweep.resources.executor == "serial":
                complete = _serial_stage(sweep, stage, say)
            else:
                from harness.sweep.ray_executor import ray_stage

                complete = ray_stage(sweep, stage, say)
            if not complete:
                return _interrupted(sweep, say)
    except KeyboardInterrupt:
        return _interrupted(sweep, say)
    finally:
        if sweep.resources.executor == "ray" and "harness.sweep.ray_executor" in sys.modules:
            from harness.sweep.ray_executor import ray_shutdown

            ray_shutdown()
    _summary(sweep, time.time() - start, say)
    return 0


def _interrupted(sweep: Sweep, say: Say) -> int:
    done = len(list(sweep.ctx.records.glob("*.json")))
    print(f"interrupted: {done} trial record(s) in {sweep.ctx.records}; continue with `{resume_command(sweep.root)}` "
          "(finished trials are kept, unfinished ones resume from their last checkpoint)", file=sys.stderr)
    return 130


def _summary(sweep: Sweep, seconds: float, say: Say) -> None:
    records = sweep.records()
    counts: dict[str, int] = {}
    for r in records:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    say(f"[{sweep.name}] finished in {seconds:.1f}s: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; records in {sweep.ctx.records}")
    for r in records:
        say(f"  {describe_result(r.get('trial_id', '?'), r)}")


def _serial_stage(sweep: Sweep, stage: str, say: Say) -> bool:
    executor = SerialExecutor(sweep.ctx, say)
    if stage == "search":
        return _serial_search(sweep, executor)
    for trial in sweep.stage_trials(stage):
        executor.run(trial)
    return True


def _serial_search(sweep: Sweep, executor: SerialExecutor) -> bool:
    from optuna.trial import FixedTrial, TrialState

    s = sweep.space.search
    study = sweep.study()
    sampler = SpaceSampler(sweep.space)
    finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)

    def run(number: int, options: dict[str, Any], params: dict[str, Any]) -> None:
        trial = Trial(f"s{number:04d}", options, stage="search", search={"number": number, "params": params})
        record = executor.run(trial)
        if record.get("status") == "ok":
            values = objective_values(record, s.objective)
            study.tell(number, values if s.multi else values[0])
        else:
            study.tell(number, state=TrialState.FAIL)

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # interrupted ones first
        run(t.number, sampler.options(FixedTrial(dict(t.params), t.number)), dict(t.params))
    while len(study.get_trials(deepcopy=False, states=finished)) < s.num_samples:
        ot = study.ask()
        options = sampler.options(ot)
        run(ot.number, options, dict(ot.params))
    return True
