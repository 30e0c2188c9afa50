"""One run of the benchmark: train (and, with a pruner, prune) a model, then write its record.

This is the Ray-free core: the CLI calls it directly, and sweep trainables wrap it, passing a
``report`` callback that receives every history entry.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from harness.checkpoint import save_checkpoint
from harness.data import DataConfig, Dataset, load_dataset
from harness.device import Precision, select_device
from harness.engine import Engine, OptimConfig, TrainingState
from harness.errors import UserError
from harness.flops import Cost, count_cost
from harness.models import MODELS, build_model, check_input_size
from harness.records import FLOPS_COUNTER, cost_entry, to_jsonable, write_json_atomic
from harness.repro import environment, seed_everything

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class JobConfig:
    model: str
    data: DataConfig
    optim: OptimConfig
    epochs: int
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    out: str | None = None
    progress: bool = True
    pruner: str | None = None
    pruner_config: Any = None  # the pruner's own typed config (see harness.pruners)

    def validate(self) -> None:
        MODELS.get(self.model)  # unknown model: UserError listing the registered ones
        self.data.validate()
        self.optim.validate()
        if self.epochs < 1:
            raise UserError(f"--epochs must be >= 1 (got {self.epochs})")
        if self.pruner_config is not None:
            self.pruner_config.validate(self)


@dataclass
class JobContext:
    """Everything a running job (and a pruner inside it) works with."""

    config: JobConfig
    data: Dataset
    precision: Precision
    engine: Engine
    state: TrainingState
    baseline_cost: Cost
    report: Report | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        return self.state.model

    @model.setter
    def model(self, value: nn.Module) -> None:
        self.state.model = value

    def cost(self) -> Cost:
        return count_cost(self.model, self.data.image_size, self.data.in_channels)

    def cost_fields(self) -> dict[str, Any]:
        c = self.cost()
        return {"flops": c.flops, "params": c.params,
                "flops_reduction": 1.0 - c.flops / self.baseline_cost.flops,
                "params_reduction": 1.0 - c.params / self.baseline_cost.params}

    def train(self, schedule_epochs, phase: str, **kwargs) -> None:
        """Run epochs through the shared engine; each history entry carries the current cost."""
        start = time.perf_counter()
        self.engine.run_epochs(self.state, schedule_epochs, phase, extra=self.cost_fields,
                               on_epoch_end=self.report, **kwargs)
        self.add_time(f"{phase}_s", time.perf_counter() - start)

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds


def prepare(cfg: JobConfig, report: Report | None = None) -> JobContext:
    """Validate, load data and build the model: every input error surfaces here, before training."""
    cfg.validate()
    device = select_device(cfg.device)
    data = load_dataset(cfg.data, device)
    check_input_size(cfg.model, data.image_size)
    seed_everything(cfg.seed)
    precision = Precision(device, cfg.amp)
    model = precision.prepare_model(build_model(cfg.model, data.num_classes, data.in_channels))
    engine = Engine(data, cfg.optim, precision, cfg.seed, progress=cfg.progress)
    baseline = count_cost(model, data.image_size, data.in_channels)
    return JobContext(cfg, data, precision, engine, TrainingState(model), baseline, report)


def run_job(cfg: JobConfig, report: Report | None = None) -> dict[str, Any]:
    """Train (plain or with the configured pruner), evaluate, save checkpoint and record."""
    wall_start = time.perf_counter()
    ctx = prepare(cfg, report)
    extra: dict[str, Any] = {}
    if cfg.pruner is None:
        ctx.train(range(cfg.epochs), "train")
    else:
        from harness.pruners import run_pruning_schedule

        extra = run_pruning_schedule(ctx)
    final = ctx.engine.evaluate(ctx.model)
    record = build_record(ctx, final, time.perf_counter() - wall_start, extra)
    if cfg.out:
        out = Path(cfg.out)
        ckpt = save_checkpoint(out / "checkpoint.pt", ctx.model, cfg.model, ctx.data.num_classes,
                               ctx.data.in_channels, meta={"record": to_jsonable(_record_summary(record))})
        record["checkpoint"] = str(ckpt.resolve())
        write_json_atomic(out / "record.json", record)
    return record


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
        "config": replace(cfg, out=str(Path(cfg.out).resolve()) if cfg.out else None),
        "data": ctx.data.describe(),
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
