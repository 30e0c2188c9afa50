"""Running a sweep: every unfinished stage through the chosen executor (Ray Tune, or serial
in-process), the interrupted and finished summaries, and the exit status.

What is left to do comes from the plan, the records and ``optuna.db`` on every start, so a
driver killed at any moment (kill -9 included) resumes with ``--resume``. The folder and its
stages are `harness.sweep.folder`; the Ray executor is `harness.sweep.ray_executor` (imported
only when used).
"""
from __future__ import annotations

import sys
import time

from harness.sweep.faults import fault
from harness.sweep.folder import Resources, Say, Sweep, resume_command
from harness.sweep.sampler import SpaceSampler
from harness.sweep.serial import SerialExecutor
from harness.sweep.trainable import describe_result

__all__ = ["Resources", "Sweep", "run_sweep", "resume_command", "EXIT_OK", "EXIT_FAILED", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130  # bad input: 2, from the command line


def run_sweep(sweep: Sweep, say: Say = print) -> int:
    """Run every unfinished stage: 0 when every trial succeeded, 1 when some failed (or were
    lost), 130 when interrupted. Releases the folder's lock when done."""
    start = time.time()
    s = sweep.space.search
    planned = f"{len(sweep.grid)} trials" if sweep.space.kind == "grid" else \
        f"{s.num_samples} Optuna trials" + (f" + the best {s.repeat_top} on seeds {s.repeat_seeds}" if s.repeat_top else "")
    say(f"[{sweep.name}] {sweep.space.kind}: {planned}; executor {sweep.resources.executor}; folder {sweep.root}")
    try:
        if sweep.resources.executor == "ray":
            _start_ray(sweep)
        for stage in sweep.stages():
            if sweep.resources.executor == "serial":
                complete = _serial_stage(sweep, stage, say)
            else:
                from harness.sweep.ray_executor import ray_stage

                complete = ray_stage(sweep, stage, say)
            if not complete:
                return _interrupted(sweep)
            fault("stage_end", sweep.root)
    except KeyboardInterrupt:
        return _interrupted(sweep)
    finally:
        if sweep.resources.executor == "ray" and "harness.sweep.ray_executor" in sys.modules:
            from harness.sweep.ray_executor import ray_shutdown

            ray_shutdown()
        sweep.lock.release()
    return _summary(sweep, time.time() - start, say)


def _start_ray(sweep: Sweep) -> None:
    """Ray up before any trial; a cluster that cannot hold one trial refuses a new sweep without
    leaving its folder behind."""
    from harness.errors import UserError
    from harness.sweep.ray_executor import ray_init

    try:
        ray_init(sweep)
    except UserError:
        sweep.discard_unstarted()
        raise


def _interrupted(sweep: Sweep) -> int:
    done = len(sweep.records())
    print(f"interrupted: {done} trial record(s) in {sweep.ctx.records}; continue with `{resume_command(sweep.root)}` "
          "(finished trials are kept, unfinished ones resume from their last checkpoint)", file=sys.stderr)
    return EXIT_INTERRUPTED


def _summary(sweep: Sweep, seconds: float, say: Say) -> int:
    records = sweep.records()
    counts: dict[str, int] = {}
    for r in records:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    say(f"[{sweep.name}] finished in {seconds:.1f}s: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; records in {sweep.ctx.records}")
    for r in records:
        say(f"  {describe_result(r.get('trial_id', '?'), r)}")
    failed = [r.get("trial_id", "?") for r in records if r.get("status") not in ("ok", "stopped")]
    if failed:
        print(f"[{sweep.name}] {len(failed)} of {len(records)} trials failed: {', '.join(failed)} (each record's "
              "'error' says why; they are counted as failed in the tables)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _serial_stage(sweep: Sweep, stage: str, say: Say) -> bool:
    executor = SerialExecutor(sweep.ctx, say)
    if stage == "search":
        return _serial_search(sweep, executor)
    for trial in sweep.stage_trials(stage):
        executor.run(trial)
    return True


def _serial_search(sweep: Sweep, executor: SerialExecutor) -> bool:
    from harness.sweep.study import (finished, make_rungs, rebuild_rungs, reconcile, running_trial, search_trial,
                                     tell_record)

    s = sweep.space.search
    study = sweep.study()
    sampler = SpaceSampler(sweep.space)
    rungs = make_rungs(s)
    pending = reconcile(sweep.ctx, study, s, sampler, executor.run)
    if rungs is not None:
        pending = rebuild_rungs(rungs, sweep.ctx, study, s, sampler, pending)

    def run(ot) -> None:
        record = executor.run(search_trial(sampler, ot), rungs)
        tell_record(study, ot.number, record, s, sweep.root)

    for number in pending:  # trials a killed or interrupted driver left RUNNING, under their own numbers
        run(running_trial(study, number))
    while finished(study) < s.num_samples:
        ot = study.ask()
        fault("study_ask", sweep.root)
        run(ot)
    return True
