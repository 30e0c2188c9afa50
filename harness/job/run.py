"""One run of the benchmark: train (and, with a pruner, prune) a model, then write its record.

This is the Ray-free core: the CLI calls it directly, and sweep trainables wrap it, passing a
``report`` callback. With ``workers`` > 1 it runs as that many data-parallel processes
(`harness.job.launch`); this process is rank 0, the only one that reports and writes.

The run is resumable: after every epoch and every pruning step its whole
state (network, optimizer, history, pruner progress, RNG) is written atomically to
``state_path``; calling `run_job` again with the same config and state file continues where
the run stopped instead of starting over.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from harness.job.checkpoint import model_from_payload, read_checkpoint, save_checkpoint
from harness.data import Dataset, load_dataset
from harness.train.device import Precision, select_device
from harness.train.distributed import SINGLE, World, current_world
from harness.train.engine import Engine, TrainHooks, TrainingState, loss_passes, make_optimizer
from harness.errors import UserError
from harness.prune.flops import Cost, count_cost, reduction
from harness.prune.pruner import check_reachable
from harness.job.config import JobConfig
from harness.job.launch import join_torchrun, run_data_parallel, torchrun_world_size
from harness.job.start import check_same_network, load_start_weights, read_state
from harness.job.schedule import FINAL_SHAPE_PHASES, run_pruning_schedule, run_unpruned_schedule
from harness.models import build_model, check_input_size
from harness.job.records import (FLOPS_COUNTER, best_epoch, cost_entry, ensure_writable_folder, portable_path,
                                 to_jsonable, write_json_atomic)
from harness.train.repro import capture_rng, environment, restore_rng, seed_everything

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
    world: World = SINGLE  # data-parallel: every rank runs this job; rank 0 alone reports and writes
    timings: dict[str, float] = field(default_factory=dict)
    stage: str = "train"  # train -> prune -> finetune -> done
    pruner_state: dict[str, Any] | None = None  # the pruner's own progress, saved with the run
    pruner: Any = None  # the running `Pruner` (its lifecycle hooks), set by the schedule
    pruner_saved: dict[str, Any] | None = None  # its `state_dict` from the state file, until attached
    pruner_fields: dict[str, Any] = field(default_factory=dict)  # record fields of a finished prune
    pre_prune: dict[str, float] | None = None
    weights: dict[str, Any] | None = None  # the pretrained start (--weights): source, sha256, classifier reset
    earlier_precisions: list[str] = field(default_factory=list)  # a resume on another device may compute otherwise
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
        # Shapes are final in an unpruned run and once a pruned run has pruned: only there does a
        # compiled graph live long enough to repay its compile time.
        final_shapes = self.config.pruner is None or phase in FINAL_SHAPE_PHASES
        self.engine.run_epochs(self.state, schedule_epochs, phase, extra=self.cost_fields,
                               on_epoch_end=epoch_end, hooks=self._pruner_hooks(), final_shapes=final_shapes,
                               **kwargs)

    def attach_pruner(self, pruner) -> Any:
        """Make ``pruner`` the run's (its hooks join training); a resumed run restores its state."""
        self.pruner = pruner
        if self.pruner_saved is not None:
            pruner.load_state_dict(self.pruner_saved)
            self.pruner_saved = None
        return pruner

    def _pruner_hooks(self) -> TrainHooks | None:
        """The engine hooks of the pruner's overridden methods; None when it overrides none."""
        p = self.pruner
        if p is None:
            return None
        hooks = TrainHooks(
            after_backward=(lambda: p.after_backward(self)) if p.uses("after_backward") else None,
            after_epoch=(lambda: p.on_epoch_end(self)) if p.uses("on_epoch_end") else None,
            weight_decay=p.weight_decay(self) if p.uses("weight_decay") else None,
        )
        return hooks if hooks != TrainHooks() else None

    def training_batches(self, images: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``images`` augmented training images in batches of the run's batch size, the first
        ones of the shuffle that ``seed`` fixes (a pruner's data-driven scores; the training's
        own shuffles, seeded from the run seed and epoch count, are not affected)."""
        batches, seen = [], 0
        for x, y in self.data.train_batches(self.config.optim.batch_size, seed):
            if seen >= images:
                break
            take = min(images - seen, y.shape[0])
            batches.append((x[:take], y[:take]))
            seen += take
        return batches

    def passes(self, batches, backward: bool = False) -> float:
        """Forward (and, with ``backward``, backward) passes of ``ctx.model`` over ``batches`` in
        eval mode (batch-norm statistics untouched), through the run's precision; returns the
        mean loss. Gradients accumulate in ``.grad``; forward hooks see the activations."""
        was_training = self.model.training
        self.model.eval()
        try:
            return loss_passes(self.model, batches, self.precision, backward)
        finally:
            self.model.train(was_training)

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    def report(self, entry: dict[str, Any]) -> None:
        """Report without saving state (e.g. in the middle of an atomic one-shot prune)."""
        if self.report_fn is not None and self.world.main:
            self.report_fn(entry, None)

    def checkpoint(self, entry: dict[str, Any] | None = None) -> None:
        """Save the whole run state (if resumable), then report ``entry``."""
        # Pruning slices weights into new tensors of default layout; back to the run's one
        # memory format, so a resumed network computes exactly what the uninterrupted one does.
        self.precision.prepare_model(self.model)
        if self.state_path is not None and self.world.main:
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
                                "pruner_hooks": self.pruner.state_dict() if self.pruner is not None else None,
                                "pruner_fields": to_jsonable(self.pruner_fields),
                                "pre_prune": self.pre_prune,
                                "weights": self.weights,
                                "precisions": [*self.earlier_precisions, self.precision.name],
                                "grad_scaler": _scaler_state(self.state.scaler),
                                **capture_rng(self.precision.device),
                            })
        if entry is not None and self.report_fn is not None and self.world.main:
            self.report_fn(entry, self.state_path)


def prepare(cfg: JobConfig, report: Report | None = None, state_path: Path | None = None,
            world: World = SINGLE) -> JobContext:
    """Validate, load data and build the model: every input error surfaces here, before training.
    Every rank of a data-parallel run prepares the same way (and resumes from the same state)."""
    cfg.validate()
    resume = read_state(state_path, cfg) if state_path is not None and Path(state_path).exists() else None
    init = read_checkpoint(cfg.init_checkpoint) if cfg.init_checkpoint and resume is None else None
    nccl = world.distributed and world.backend == "nccl"
    device = torch.device("cuda", world.local_rank) if nccl else select_device(cfg.device)
    precision = Precision(device, mode=cfg.precision, deterministic=cfg.deterministic)
    precision.configure()
    with world.main_first():  # rank 0 decodes the data cache once; the others then read it
        data = load_dataset(cfg.data, device)
    check_input_size(cfg.model, data.image_size)
    seed_everything(cfg.seed)
    model = build_model(cfg.model, data.num_classes, data.in_channels)
    baseline = count_cost(model, data.image_size, data.in_channels)  # always the unpruned architecture
    if cfg.pruner_config is not None:  # a target the per-layer caps make unreachable: refused before training
        check_reachable(cfg.pruner_config, model, data.image_size, data.in_channels, cfg.model)
    if cfg.scratch is not None:  # the source's architecture with fresh weights, before any resumed state
        from harness.job.scratch import build_scratch_model

        model = build_scratch_model(model, cfg.scratch, cfg.model, data.image_size, data.in_channels)
    if init is not None:
        check_same_network(init, cfg, data)
        model = model_from_payload(init)
    weights = load_start_weights(model, cfg, data.in_channels) if cfg.weights and resume is None else None
    if resume is not None:
        model = model_from_payload(resume)
    model = precision.prepare_model(model)
    engine = Engine(data, cfg.optim, precision, cfg.seed, progress=cfg.progress and world.main, compile=cfg.compile,
                    world=world)
    ctx = JobContext(cfg, data, precision, engine, TrainingState(model), baseline, report,
                     Path(state_path) if state_path is not None else None, world)
    ctx.weights = weights
    if resume is not None:
        _restore(ctx, resume["extra_state"])
    world.barrier()  # no rank starts (and rank 0 writes no state) before every rank has read its start
    return ctx


def _scaler_state(scaler: torch.amp.GradScaler | None) -> dict[str, Any] | None:
    return scaler.state_dict() if scaler is not None and scaler.is_enabled() else None


def _restore(ctx: JobContext, saved: dict[str, Any]) -> None:
    ctx.stage = saved["stage"]
    ctx.state.history = list(saved["history"])
    ctx.state.epochs_trained = int(saved["epochs_trained"])
    ctx.state.train_time_s = float(saved["train_time_s"])
    ctx.timings = dict(saved["timings"])
    ctx.wall_s_before = float(saved.get("wall_s", 0.0))  # states saved before wall_s was kept: 0
    ctx.pruner_state = saved["pruner_state"]
    ctx.pruner_saved = saved.get("pruner_hooks")  # states saved before the lifecycle hooks: none
    ctx.pruner_fields = dict(saved["pruner_fields"])
    ctx.pre_prune = saved["pre_prune"]
    ctx.weights = saved.get("weights")  # the start's source and hash, as read when the run began
    ctx.earlier_precisions = [p for p in saved.get("precisions", []) if p != ctx.precision.name]
    restore_rng(saved, ctx.precision.device)  # a CUDA generator saved on a GPU is skipped on CPU
    if saved.get("grad_scaler") and ctx.precision.name == "fp16":  # one scale for the whole run
        ctx.state.scaler = ctx.precision.grad_scaler()
        ctx.state.scaler.load_state_dict(saved["grad_scaler"])
    if saved["optimizer"] is not None:
        ctx.state.optimizer = make_optimizer(ctx.model, ctx.config.optim)
        ctx.state.optimizer.load_state_dict(saved["optimizer"])


def run_job(cfg: JobConfig, report: Report | None = None, state_path: str | Path | None = None) -> dict[str, Any]:
    """Train (plain or with the configured pruner), evaluate, save checkpoint and record.

    With ``state_path`` (the CLI uses ``<out>/state.pt``) the run can be interrupted and
    resumed; the state file is removed once the record is written.
    """
    wall_start = time.perf_counter()
    state = Path(state_path) if state_path is not None else None
    world = current_world()
    joined = False
    if not world.distributed and torchrun_world_size() > 1:
        world, joined = join_torchrun(cfg.workers, cfg.device), True
        cfg = replace(cfg, workers=world.size)  # the record says how many processes ran it
    try:
        if world.main:
            if cfg.out and (Path(cfg.out) / "record.json").exists():
                raise UserError(f"{Path(cfg.out) / 'record.json'} already exists: that run is finished; "
                                "choose another --out (nothing was overwritten)")
            if cfg.out:
                ensure_writable_folder(cfg.out, "--out", keep=False)  # refused input leaves no folder behind
        if cfg.workers > 1 and not world.distributed:
            cfg.validate()  # a bad input fails here, before any process starts
            return run_data_parallel(cfg.workers, cfg.device, lambda w: _run(cfg, report, state, w, wall_start),
                                     rank_job, (cfg, state))
        return _run(cfg, report, state, world, wall_start)
    finally:
        if joined:
            torch.distributed.destroy_process_group()


def rank_job(cfg: JobConfig, state_path: Path | None, world: World) -> None:
    """What a spawned rank of a data-parallel run does: the job, without reports or files."""
    _run(cfg, None, state_path, world, time.perf_counter())


def _run(cfg: JobConfig, report: Report | None, state_path: Path | None, world: World,
         wall_start: float) -> dict[str, Any]:
    ctx = prepare(cfg, report, state_path, world)
    ctx.started = wall_start  # data loading and model building count too
    if cfg.pruner is None:
        run_unpruned_schedule(ctx)
    else:
        run_pruning_schedule(ctx)
    ctx.stage = "done"
    final = ctx.engine.evaluate(ctx.model)
    extra = {"pre_prune": ctx.pre_prune, **ctx.pruner_fields} if cfg.pruner is not None else {}
    if cfg.init_checkpoint:
        extra["init"] = _init_summary(cfg.init_checkpoint)
    if cfg.scratch is not None:  # the table's target column and group read these
        extra.update(scratch=cfg.scratch.block(), target_flops=cfg.scratch.target_flops)
    if ctx.weights is not None:
        extra["weights"] = ctx.weights
    if (cfg.pruner is not None or cfg.scratch is not None) and world.main:  # measured once, while the other ranks wait
        from harness.job.latency import job_speedup

        extra["latency"] = job_speedup(ctx)  # the pruned network against the unpruned one, this device
    record = build_record(ctx, final, ctx.wall_s(), extra)
    if not world.main:
        world.barrier()  # rank 0 writes the files; the run ends for every rank together
        return record
    if cfg.out:
        out = Path(cfg.out)
        ckpt = save_checkpoint(out / "checkpoint.pt", ctx.model, cfg.model, ctx.data.num_classes,
                               ctx.data.in_channels, meta={"record": to_jsonable(_record_summary(record))})
        record["checkpoint"] = portable_path(ckpt, out)
        write_json_atomic(out / "record.json", record)
    if ctx.state_path is not None:
        ctx.state_path.unlink(missing_ok=True)
    world.barrier()
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
        "precision": {**ctx.precision.describe(), **({"earlier": ctx.earlier_precisions}
                                                     if ctx.earlier_precisions else {})},
        "history": ctx.state.history,
        "final": final,
        "best": best_epoch(ctx.state.history, cfg.pruner is not None),  # the papers' model_best, test-selected
        "flops": cost_entry(ctx.baseline_cost.flops, after.flops),
        "params": cost_entry(ctx.baseline_cost.params, after.params),
        "flops_counter": f"{FLOPS_COUNTER}, input 1x{ctx.data.in_channels}x{ctx.data.image_size}x{ctx.data.image_size}",
        "epochs_trained": ctx.state.epochs_trained,
        "wall_time_s": wall_time_s,
        "timings": ctx.timings,
        "compile": ctx.engine.compiler.summary(),
        "distributed": ctx.world.describe(cfg.optim.batch_size),
        **extra,
    })


def _record_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint remembers of its run (eval reuses the dataset settings)."""
    return {k: record[k] for k in ("model", "dataset", "pruner", "seed", "config", "final", "flops", "params",
                                   "epochs_trained", "precision")}
