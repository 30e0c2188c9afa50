"""One run of the benchmark: train (and, with a pruner, prune) a model, then write its record.

This is the Ray-free core: the CLI calls it directly, and sweep trainables wrap it, passing a
``report`` callback. The run is resumable: after every epoch and every pruning step its whole
state (network, optimizer, history, pruner progress, RNG) is written atomically to
``state_path``; calling `run_job` again with the same config and state file continues where
the run stopped instead of starting over.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from harness.job.checkpoint import model_from_payload, read_checkpoint, save_checkpoint
from harness.data import Dataset, load_dataset
from harness.train.device import Precision, select_device
from harness.train.engine import Engine, TrainingState, make_optimizer
from harness.errors import UserError
from harness.prune.flops import Cost, count_cost, reduction
from harness.prune.pruner import check_reachable
from harness.job.config import JobConfig
from harness.job.schedule import run_pruning_schedule
from harness.models import build_model, check_input_size
from harness.job.records import (FLOPS_COUNTER, cost_entry, ensure_writable_folder, portable_path, to_jsonable,
                                 write_json_atomic)
from harness.train.repro import environment, seed_everything

# report(entry, state_path): every history entry (phase train/recover/finetune) and every
# pruning step (phase "prune"); state_path holds the run's state as of that entry, or None.
Report = Callable[[dict[str, Any], "Path | None"], None]


@dataclass
class JobContext:
    """Everything a running job (and a pruner inside it) works with."""

    config: JobConfig
    data: Dataset
    precision: Precision
    engine: Engine
    state: TrainingState
    baseline_cost: Cost
    report_fn: Report | None = None
    state_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    stage: str = "train"  # train -> prune -> finetune -> done
    pruner_state: dict[str, Any] | None = None  # the pruner's own progress, saved with the run
    pruner_fields: dict[str, Any] = field(default_factory=dict)  # record fields of a finished prune
    pre_prune: dict[str, float] | None = None
    # Wall time of the runs before a resume, and when this one started: a resumed record's
    # wall_time_s is the whole run's, like its timings.
    wall_s_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def wall_s(self) -> float:
        return self.wall_s_before + time.perf_counter() - self.started

    @property
    def model(self) -> nn.Module:
        return self.state.model

    def cost(self) -> Cost:
        return count_cost(self.model, self.data.image_size, self.data.in_channels)

    def cost_fields(self) -> dict[str, Any]:
        c = self.cost()
        return {"flops": c.flops, "params": c.params,
                "flops_reduction": reduction(self.baseline_cost.flops, c.flops),
                "params_reduction": reduction(self.baseline_cost.params, c.params)}

    def epochs_in_phase(self, phase: str) -> int:
        return sum(1 for e in self.state.history if e["phase"] == phase)

    def train(self, schedule_epochs, phase: str, **kwargs) -> None:
        """Run epochs through the shared engine; each is saved and reported when it ends."""
        start = time.perf_counter()

        def epoch_end(entry: dict[str, Any]) -> None:
            self.add_time(f"{phase}_s", time.perf_counter() - self._phase_start)
            self._phase_start = time.perf_counter()
            self.checkpoint(entry)

        self._phase_start = start
        self.engine.run_epochs(self.state, schedule_epochs, phase, extra=self.cost_fields,
                               on_epoch_end=epoch_end, **kwargs)

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    def report(self, entry: dict[str, Any]) -> None:
        """Report without saving state (e.g. in the middle of an atomic one-shot prune)."""
        if self.report_fn is not None:
            self.report_fn(entry, None)

    def checkpoint(self, entry: dict[str, Any] | None = None) -> None:
        """Save the whole run state (if resumable), then report ``entry``."""
        # Pruning slices weights into new tensors of default layout; back to the run's one
        # memory format, so a resumed network computes exactly what the uninterrupted one does.
        self.precision.prepare_model(self.model)
        if self.state_path is not None:
            opt = self.state.optimizer
            save_checkpoint(self.state_path, self.model, self.config.model, self.data.num_classes,
                            self.data.in_channels, meta={"job": self.config.identity()}, extra_state={
                                "stage": self.stage,
                                "history": self.state.history,
                                "epochs_trained": self.state.epochs_trained,
                                "train_time_s": self.state.train_time_s,
                                "timings": self.timings,
                                "wall_s": self.wall_s(),
                                "optimizer": opt.state_dict() if opt is not None else None,
                                "pruner_state": self.pruner_state,
                                "pruner_fields": to_jsonable(self.pruner_fields),
                                "pre_prune": self.pre_prune,
                                "rng": torch.get_rng_state(),
                            })
        if entry is not None and self.report_fn is not None:
            self.report_fn(entry, self.state_path)


def prepare(cfg: JobConfig, report: Report | None = None, state_path: Path | None = None) -> JobContext:
    """Validate, load data and build the model: every input error surfaces here, before training."""
    cfg.validate()
    resume = _read_state(state_path, cfg) if state_path is not None and Path(state_path).exists() else None
    init = read_checkpoint(cfg.init_checkpoint) if cfg.init_checkpoint and resume is None else None
    device = select_device(cfg.device)
    data = load_dataset(cfg.data, device)
    check_input_size(cfg.model, data.image_size)
    seed_everything(cfg.seed)
    precision = Precision(device, cfg.amp)
    model = build_model(cfg.model, data.num_classes, data.in_channels)
    baseline = count_cost(model, data.image_size, data.in_channels)  # always the unpruned architecture
    if cfg.pruner_config is not None:  # a target the per-layer caps make unreachable: refused before training
        check_reachable(cfg.pruner_config, model, data.image_size, data.in_channels, cfg.model)
    if init is not None:
        _check_same_network(init, cfg, data)
        model = model_from_payload(init)
    if resume is not None:
        model = model_from_payload(resume)
    model = precision.prepare_model(model)
    engine = Engine(data, cfg.optim, precision, cfg.seed, progress=cfg.progress)
    ctx = JobContext(cfg, data, precision, engine, TrainingState(model), baseline, report,
                     Path(state_path) if state_path is not None else None)
    if resume is not None:
        _restore(ctx, resume["extra_state"])
    return ctx


def _read_state(path: Path, cfg: JobConfig) -> dict[str, Any]:
    payload = read_checkpoint(path)
    if payload["meta"].get("job") != cfg.identity():
        raise UserError(f"{path} holds the state of a run with other settings; use another --out, "
                        "or delete the file to start over")
    return payload


def _check_same_network(payload: dict[str, Any], cfg: JobConfig, data: Dataset) -> None:
    got = (payload["model"], payload["num_classes"], payload["in_channels"])
    want = (cfg.model, data.num_classes, data.in_channels)
    if got != want:
        raise UserError(f"--from-checkpoint holds {got[0]} ({got[1]} classes, {got[2]} channels) but the run is "
                        f"{want[0]} on {cfg.data.dataset} ({want[1]} classes, {want[2]} channels); "
                        "pass the matching --model and --dataset")


def _restore(ctx: JobContext, saved: dict[str, Any]) -> None:
    ctx.stage = saved["stage"]
    ctx.state.history = list(saved["history"])
    ctx.state.epochs_trained = int(saved["epochs_trained"])
    ctx.state.train_time_s = float(saved["train_time_s"])
    ctx.timings = dict(saved["timings"])
    ctx.wall_s_before = float(saved.get("wall_s", 0.0))  # states saved before wall_s was kept: 0
    ctx.pruner_state = saved["pruner_state"]
    ctx.pruner_fields = dict(saved["pruner_fields"])
    ctx.pre_prune = saved["pre_prune"]
    torch.set_rng_state(saved["rng"])
    if saved["optimizer"] is not None:
        ctx.state.optimizer = make_optimizer(ctx.model, ctx.config.optim)
        ctx.state.optimizer.load_state_dict(saved["optimizer"])


def run_job(cfg: JobConfig, report: Report | None = None, state_path: str | Path | None = None) -> dict[str, Any]:
    """Train (plain or with the configured pruner), evaluate, save checkpoint and record.

    With ``state_path`` (the CLI uses ``<out>/state.pt``) the run can be interrupted and
    resumed; the state file is removed once the record is written.
    """
    wall_start = time.perf_counter()
    if cfg.out and (Path(cfg.out) / "record.json").exists():
        raise UserError(f"{Path(cfg.out) / 'record.json'} already exists: that run is finished; "
                        "choose another --out (nothing was overwritten)")
    if cfg.out:
        ensure_writable_folder(cfg.out, "--out", keep=False)  # refused input leaves no folder behind
    ctx = prepare(cfg, report, Path(state_path) if state_path is not None else None)
    ctx.started = wall_start  # data loading and model building count too
    if cfg.pruner is None:
        ctx.train(range(ctx.epochs_in_phase("train"), cfg.epochs), "train")
    else:
        run_pruning_schedule(ctx)
    ctx.stage = "done"
    final = ctx.engine.evaluate(ctx.model)
    extra = {"pre_prune": ctx.pre_prune, **ctx.pruner_fields} if cfg.pruner is not None else {}
    if cfg.init_checkpoint:
        extra["init"] = _init_summary(cfg.init_checkpoint)
    if cfg.pruner is not None:
        from harness.job.latency import job_speedup

        extra["latency"] = job_speedup(ctx)  # the pruned network against the unpruned one, this device
    record = build_record(ctx, final, ctx.wall_s(), extra)
    if cfg.out:
        out = Path(cfg.out)
        ckpt = save_checkpoint(out / "checkpoint.pt", ctx.model, cfg.model, ctx.data.num_classes,
                               ctx.data.in_channels, meta={"record": to_jsonable(_record_summary(record))})
        record["checkpoint"] = portable_path(ckpt, out)
        write_json_atomic(out / "record.json", record)
    if ctx.state_path is not None:
        ctx.state_path.unlink(missing_ok=True)
    return record


def _init_summary(path: str) -> dict[str, Any]:
    """Where a three-stage run's network came from, so tables can count its whole epoch budget."""
    meta = read_checkpoint(path)["meta"].get("record", {})
    return {"checkpoint": portable_path(path), "epochs_trained": meta.get("epochs_trained"),
            "final": meta.get("final")}


def build_record(ctx: JobContext, final: dict[str, float], wall_time_s: float,
                 extra: dict[str, Any]) -> dict[str, Any]:
    cfg = ctx.config
    after = ctx.cost()
    return to_jsonable({
        "record_version": 1,
        "model": cfg.model,
        "dataset": cfg.data.dataset,
        "pruner": cfg.pruner,
        "seed": cfg.seed,
        "config": cfg.portable(),
        "data": {**ctx.data.describe(), "data_root": portable_path(cfg.data.data_root),
                 "root": portable_path(ctx.data.root)},
        "env": environment(ctx.precision.device),
        "history": ctx.state.history,
        "final": final,
        "flops": cost_entry(ctx.baseline_cost.flops, after.flops),
        "params": cost_entry(ctx.baseline_cost.params, after.params),
        "flops_counter": f"{FLOPS_COUNTER}, input 1x{ctx.data.in_channels}x{ctx.data.image_size}x{ctx.data.image_size}",
        "epochs_trained": ctx.state.epochs_trained,
        "wall_time_s": wall_time_s,
        "timings": ctx.timings,
        **extra,
    })


def _record_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint remembers of its run (eval reuses the dataset settings)."""
    return {k: record[k] for k in ("model", "dataset", "pruner", "seed", "config", "final", "flops", "params",
                                   "epochs_trained")}
