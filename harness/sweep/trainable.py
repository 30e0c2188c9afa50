"""One sweep trial: run it (resuming from its state), write its record; Ray and serial executors.

`execute_trial` is Ray-free: it builds the trial's `JobConfig`, calls `run_job` with a report
callback and ``state_path = trials/<name>/state.pt``, and writes ``records/<name>.json`` (the
run_job record plus ``status``, ``trial_id``, ``sweep``, ``options``, ``search``). A trial that
raises (bad combination, diverged loss, a broken plugin) gets a ``status: failed`` record with
its reason; a trial whose record exists is never run again.

`ray_trainable` wraps it for Tune: every report carries the tuned metrics (prune steps carry
the last epoch's forward, phase "prune"), and each report that follows a state save hands
Tune a checkpoint directory holding ``state.pt``; a trial Ray restarts after its worker died
copies it back and `run_job` continues from it. A trial that failed ends normally (its record
says why): Ray retries only workers that die. `SerialExecutor` runs the same trials
in-process, without Ray. Records hold paths relative to the sweep folder (``trials/<name>``).
"""
from __future__ import annotations

import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import UserError
from harness.job.groups import group_of
from harness.job.records import portable_path, read_json, resolve_path, to_jsonable, write_json_atomic
from harness.sweep.faults import fault
from harness.sweep.lock import trial_lock
from harness.sweep.options import portable_options
from harness.sweep.plan import job_config
from harness.sweep.resume import log_resume, read_resume_log, take_checkpoint
from harness.sweep.space import Trial

NAN = float("nan")
Emit = Callable[[dict[str, Any], "Path | None"], None]


class TrialStopped(Exception):
    """Raised from a trial's report when early stopping (ASHA) ends it; its record says ``stopped``."""


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep needs (picklable; absolute paths: Ray trials run elsewhere)."""

    name: str
    root: str
    plugins: tuple[str, ...] = ()
    threads: int = 1
    executor: str = "serial"
    search: dict[str, Any] | None = None   # Search.describe() of an Optuna sweep
    workers: int = 1                       # data-parallel processes per trial (--workers-per-trial)

    @property
    def records(self) -> Path:
        return Path(self.root) / "records"

    def record_path(self, name: str) -> Path:
        return self.records / f"{name}.json"

    def trial_dir(self, name: str) -> Path:
        return Path(self.root) / "trials" / name


class Progress:
    """The ``report`` callback given to `run_job`: turns history entries into Tune metrics."""

    def __init__(self, emit: Emit | None = None):
        self.emit = emit
        self.last = {"top1": NAN, "top5": NAN, "loss": NAN}
        self.epoch = 0
        self.history: list[dict[str, Any]] = []

    def __call__(self, entry: dict[str, Any], state_path: Path | None) -> None:
        if entry.get("phase") != "prune" and "test_top1" in entry:
            self.last = {"top1": entry["test_top1"], "top5": entry["test_top5"], "loss": entry["test_loss"]}
            self.epoch = int(entry["epoch"])
            self.history.append(dict(entry))
        metrics = {**self.last, "epoch": self.epoch, "phase": entry.get("phase"),
                   "flops_reduction": entry.get("flops_reduction", NAN),
                   "params_reduction": entry.get("params_reduction", NAN)}
        if entry.get("step") is not None:
            metrics["step"] = entry["step"]
        if self.emit is not None:
            self.emit(metrics, state_path)


def past_reports(history: list[dict[str, Any]], record: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The reports a trial with this history made (what an early-stopping scheduler saw), and the
    final one of an ok ``record``: how `harness.sweep.asha.Rungs` is rebuilt after a crash."""
    reports: list[dict[str, Any]] = []
    progress = Progress(lambda metrics, _state: reports.append(metrics))
    for entry in history:
        progress(entry, None)
    if record is not None and record.get("status") == "ok":
        reports.append(final_metrics(record))
    return reports


def final_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """The last report of a trial: its record's final numbers (the Optuna objective values)."""
    ok = record.get("status") == "ok"
    final = record.get("final") or {}
    return {"top1": final.get("top1", NAN), "top5": final.get("top5", NAN), "loss": final.get("loss", NAN),
            "flops_reduction": (record.get("flops") or {}).get("reduction", NAN),
            "params_reduction": (record.get("params") or {}).get("reduction", NAN),
            "epoch": record.get("epochs_trained", 0), "phase": "done", "final": ok, "status": record.get("status")}


def objective_values(record: dict[str, Any], objective: list[str]) -> list[float]:
    m = final_metrics(record)
    return [float(m[name]) for name in objective]


def execute_trial(ctx: SweepContext, trial: Trial, emit: Emit | None = None,
                  checkpoint_dir: str | Path | None = None) -> dict[str, Any]:
    """Run (or resume, or skip) one trial and write its record; returns the record.

    Never raises for a trial's own failure (the record says ``status: failed``) or an early
    stop (``stopped``); KeyboardInterrupt passes through with the state file kept for a resume.
    """
    path = ctx.record_path(trial.name)
    if path.exists():
        return read_json(path)  # finished before: neither lost nor re-run
    out = ctx.trial_dir(trial.name)
    with trial_lock(out):  # a worker of a killed driver may still be on it for a few seconds
        if path.exists():
            return read_json(path)
        return _execute(ctx, trial, out, emit, checkpoint_dir)


def _execute(ctx: SweepContext, trial: Trial, out: Path, emit: Emit | None,
             checkpoint_dir: str | Path | None) -> dict[str, Any]:
    state = out / "state.pt"
    log_resume(out, take_checkpoint(checkpoint_dir, state, out))

    def report(metrics: dict[str, Any], state_path: Path | None) -> None:
        if emit is not None:
            emit(metrics, state_path)
        if state_path is not None:
            fault("trial_report", ctx.root)

    progress = Progress(report)
    start = time.time()
    options = dict(trial.options)
    cfg = None
    try:
        if trial.budget_from:
            options.update(_matched_budget(ctx, trial.budget_from, options))
        source = _scratch_source(ctx, trial.arch_from_trial) if trial.arch_from_trial else None
        # a trial's processes are a resource of the sweep (Tune reserves the trial's CPUs/GPUs for all of them)
        cfg = job_config({**options, "workers": ctx.workers}, str(out), ctx.plugins, arch_source=source)
        if (out / "record.json").exists():  # run_job finished, the sweep record was not written yet
            record = read_json(out / "record.json")
        else:
            from harness.job.run import run_job

            record = run_job(cfg, report=progress, state_path=state)
        record = {**record, "status": "ok"}
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - every trial failure becomes a record
        saved = saved_history(state)  # a resumed trial's earlier epochs are only in its state file
        history = saved if len(saved) > len(progress.history) else progress.history
        record = failed_record(trial, options, cfg, exc, history, time.time() - start)
        if isinstance(exc, TrialStopped):
            record.update(status="stopped", error=str(exc), traceback=None)
    record.update(_sweep_fields(ctx, trial, record))
    write_record(ctx, trial.name, record)
    return record


def write_record(ctx: SweepContext, name: str, record: dict[str, Any]) -> Path:
    """``records/<name>.json``, atomically: a hidden temporary file renamed into place."""
    path = ctx.record_path(name)
    tmp = write_json_atomic(path.with_name(f".{path.name}.{os.getpid()}.tmp"), record)
    fault("record_write", ctx.root)
    os.replace(tmp, path)
    return path


def driver_record(ctx: SweepContext, trial: Trial, status: str, reason: str,
                  upto_epoch: int | None = None) -> dict[str, Any]:
    """The record of a trial that could not write its own (stopped by the scheduler, a worker
    that died for good, a driver that died before writing it): its history from its state file
    (up to ``upto_epoch``, where a scheduler stopped it), as the trial's own would be."""
    out = ctx.trial_dir(trial.name)
    history = saved_history(out / "state.pt")
    if upto_epoch is not None:
        history = [h for h in history if h["epoch"] <= upto_epoch]
    try:
        cfg = job_config(dict(trial.options), str(out), ctx.plugins)
    except Exception:  # noqa: BLE001 - a matched budget whose source failed, a plugin gone
        cfg = None
    record = failed_record(trial, trial.options, cfg, RuntimeError(reason), history, 0.0)
    record.update(status=status, error=reason, traceback=None)
    record.update(_sweep_fields(ctx, trial, record))
    write_record(ctx, trial.name, record)
    return record


def failed_record(trial: Trial, options: dict[str, Any], cfg: Any, exc: BaseException,
                  history: list[dict[str, Any]], wall_time_s: float) -> dict[str, Any]:
    """What a failed trial leaves: its settings (for tables' notes), the reason and the partial history."""
    from harness.train.engine import TrainingDiverged

    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TrainingDiverged):
        reason = f"training diverged: {exc}"
    record = {
        "record_version": 1,
        "status": "failed",
        "error": reason,
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:],
        "model": options.get("model"),
        "dataset": options.get("dataset", "digits"),
        "pruner": options.get("pruner"),
        "seed": options.get("seed"),
        "config": to_jsonable(cfg.portable()) if cfg is not None else None,
        "history": history,
        "final": None,
        "epochs_trained": history[-1]["epoch"] if history else 0,
        "wall_time_s": wall_time_s,
    }
    if options.get("target_flops") is not None:  # a scratch trial's row needs it, whenever it failed
        record["target_flops"] = options["target_flops"]
    try:
        import torch

        from harness.train.repro import environment

        record["env"] = environment(torch.device("cpu"))
    except Exception:  # noqa: BLE001 - the environment is a courtesy here
        pass
    return record


def saved_history(state: Path) -> list[dict[str, Any]]:
    """The history in a run's state file ([] when there is none or it cannot be read)."""
    if not state.exists():
        return []
    try:
        from harness.job.checkpoint import read_checkpoint

        return list(read_checkpoint(state)["extra_state"]["history"])
    except Exception:  # noqa: BLE001
        return []


def _sweep_fields(ctx: SweepContext, trial: Trial, record: dict[str, Any]) -> dict[str, Any]:
    out = ctx.trial_dir(trial.name)
    fields: dict[str, Any] = {"trial_id": trial.name, "sweep": ctx.name, "executor": ctx.executor,
                              "stage": trial.stage, "options": to_jsonable(portable_options(trial.options))}
    if record.get("checkpoint"):  # run_job's is relative to the trial folder; the sweep's to the sweep folder
        fields["checkpoint"] = portable_path(resolve_path(record["checkpoint"], out), ctx.root)
    if isinstance(record.get("config"), dict):
        fields["config"] = {**record["config"], "out": portable_path(out, ctx.root)}
    if trial.budget_from:
        fields["epoch_budget_from"] = trial.budget_from
    if trial.arch_from_trial:
        fields["arch_from_trial"] = trial.arch_from_trial
        if not isinstance(record.get("scratch"), dict):  # failed before its run: still its own table row
            twin = ctx.record_path(trial.arch_from_trial)
            fields["scratch"] = {"budget": trial.options.get("scratch"), "source_pruner": trial.options["arch_from"],
                                 "source_group": group_of(read_json(twin)) if twin.exists() else None}
    # the trial folder's log: every restart, also of a trial whose record the driver writes
    fields["resumed"] = [*(record.get("resumed") or []), *read_resume_log(out)]
    if trial.search is not None:
        search = dict(trial.search)
        if ctx.search and record.get("status") == "ok" and "number" in search:
            values = objective_values(record, ctx.search["metric_names"])
            search["values" if len(values) > 1 else "value"] = values if len(values) > 1 else values[0]
        fields["search"] = {**(ctx.search or {}), **search}
    return fields


def _matched_budget(ctx: SweepContext, sources: str, options: dict[str, Any]) -> dict[str, Any]:
    """epoch_budget from the LAASP twin's record; an unpruned trial (several twins, ", "-joined)
    takes the largest, and trains its extra epochs at that twin's prune epoch unless it sets one."""
    records = [read_json(_twin_record(ctx, source, "epoch budget source", "a budget"))
               for source in sources.split(", ")]
    longest = max(records, key=lambda r: int(r["epochs_trained"]))
    out: dict[str, Any] = {"epoch_budget": int(longest["epochs_trained"])}
    if options.get("pruner") is None and options.get("budget_epoch") is None:
        out["budget_epoch"] = int(longest["config"]["pruner_config"]["prune_epoch"])
    return out


def _scratch_source(ctx: SweepContext, source: str) -> Path:
    """The record of a scratch trial's twin, which ran in an earlier stage."""
    return _twin_record(ctx, source, "architecture source", "an architecture")


def _twin_record(ctx: SweepContext, source: str, role: str, lacks: str) -> Path:
    """The finished record of ``source``, a trial of an earlier stage this one takes ``role`` from."""
    path = ctx.record_path(source)
    if not path.exists():
        raise UserError(f"{role} {source} has no record yet (it runs in an earlier stage)")
    if (rec := read_json(path)).get("status") != "ok":
        raise UserError(f"{role} {source} failed ({rec.get('error')}), so this trial has no {lacks}")
    return path


# ----------------------------------------------------------------------------- Ray

def trial_from_config(config: dict[str, Any], name: str, plan: dict[str, dict[str, Any]]) -> Trial:
    """The Trial a Tune config stands for: a planned trial by name, or an Optuna sample
    (``{"options", "optuna_number", "params"}``, from the search's searcher)."""
    if name in plan:
        return Trial.from_json(plan[name])
    return Trial.from_json({"name": name, "options": config["options"], "stage": "search",
                            "search": {"number": int(config["optuna_number"]), "params": dict(config["params"])}})


def ray_trainable(config: dict[str, Any], ctx: SweepContext, plan: dict[str, dict[str, Any]]) -> None:
    """The Tune function trainable (``tune.with_parameters(ray_trainable, ctx=..., plan=...)``)."""
    import ray
    import torch
    from ray import tune

    from harness.train.memory import cap_process_share, release_cached_memory

    if not ray.get_gpu_ids():  # a trial given no GPU must not use one (Ray 2.60 no longer hides them)
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    else:  # a fractional-GPU trial shares the device: cap its allocator at its share (LAASP sizes batches by it)
        cap_process_share(ray.get_runtime_context().get_assigned_resources().get("GPU", 1.0))
    torch.set_num_threads(ctx.threads)  # spinning thread pools crawl when cores are shared
    name = tune.get_context().get_trial_name()
    trial = trial_from_config(config, name, plan)
    checkpoint = tune.get_checkpoint()
    scratch = ctx.trial_dir(name) / ".tune_checkpoint"

    def emit(metrics: dict[str, Any], state_path: Path | None) -> None:
        if state_path is None or not Path(state_path).exists():
            tune.report(metrics)
            return
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            os.link(state_path, scratch / "state.pt")
        except OSError:
            shutil.copyfile(state_path, scratch / "state.pt")
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(scratch)))  # copied to storage here
        shutil.rmtree(scratch, ignore_errors=True)

    try:
        if checkpoint is not None:
            with checkpoint.as_directory() as restored:
                record = execute_trial(ctx, trial, emit, checkpoint_dir=restored)
        else:
            record = execute_trial(ctx, trial, emit)
    finally:
        release_cached_memory()  # Tune reuses this worker: the next trial starts with the GPU memory given back
    if record.get("status") == "ok":
        tune.report(final_metrics(record))
    # A failed trial ends normally, its record saying why: raising would make Tune retry it, and
    # retries (FailureConfig.max_failures) are for workers that die, not for a diverged loss.


def describe_result(name: str, record: dict[str, Any]) -> str:
    status = record.get("status")
    if status == "ok":
        m = final_metrics(record)
        return (f"done {name}: top1={m['top1']:.2f}% flops -{100 * m['flops_reduction']:.1f}% "
                f"epochs={m['epoch']} ({record.get('wall_time_s', 0):.1f}s)")
    return f"{status} {name}: {record.get('error')}"

