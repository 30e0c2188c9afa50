"""The pruner registry and the one schedule every pruner runs in.

A pruner is a class registered with ``@PRUNERS.register(name)``, with a typed ``Config``
dataclass (validated once, at the edge) and a ``prune(ctx)`` method called at ``prune_epoch``.
The schedule is the same for every pruner, for a fair table: train to ``prune_epoch``, prune
to the FLOPs target (a pruner may train recovery epochs through ``ctx.train``), then train to
the total epoch count with a fresh optimizer.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import UserError
from harness.registry import Registry

PRUNERS: Registry[type["Pruner"]] = Registry("pruner")
BUILTIN_MODULES = ("laasp.schedule", "baselines")


@dataclass(frozen=True)
class PruneSchedule:
    """The schedule settings every pruner's Config starts with (subclass it and add your own)."""

    target_flops: float          # FLOPs reduction to reach, e.g. 0.55, relative to the unpruned model
    prune_epoch: int = 0         # epochs of training before pruning (0: prune the start network)
    max_prune_rate: float = 1.0  # per-layer cap on the pruned fraction; a layer always keeps >= 1 filter

    def validate(self, job=None) -> None:
        if not 0 < self.target_flops < 1:
            raise UserError(f"--target-flops must be a fraction in (0, 1), e.g. 0.55 for 55% fewer FLOPs "
                            f"(got {self.target_flops})")
        if not 0 < self.max_prune_rate <= 1:
            raise UserError(f"--max-prune-rate must be in (0, 1] (got {self.max_prune_rate})")
        if self.prune_epoch < 0:
            raise UserError(f"--prune-epoch must be >= 0 (got {self.prune_epoch})")
        if job is not None and self.prune_epoch > job.epochs:
            raise UserError(f"--prune-epoch {self.prune_epoch} is after the last epoch (--epochs {job.epochs}); "
                            "use a prune epoch <= --epochs")


@dataclass
class StepResult:
    """One pruning step as the record's ``trace`` holds it, the same keys for every pruner
    (a one-shot baseline records its single removal as step 1 on layer ``"*"``)."""

    step: int
    layer: str
    criterion: str
    removed: int
    loss: float | None  # LAASP: the winner's loss on the subset; one-shot baselines: None
    runner_up_loss: float | None
    flops_reduction: float
    candidates: int | None  # distinct networks evaluated (LAASP)
    tied_criteria: list[str]  # other criteria of the winning layer that chose the same filters
    selection_s: float  # candidates and the configured search (what a run without the check spends)
    approx_agrees: bool | None = None  # with approx_check: did the other search pick the same?
    check_s: float = 0.0  # the other search, run only for approx_check

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Pruner(ABC):
    Config: ClassVar[type]

    def __init__(self, config: Any):
        self.config = config

    @abstractmethod
    def prune(self, ctx) -> dict[str, Any]:
        """Remove filters from ``ctx.model`` until ``config.target_flops``; return record fields."""


def load_builtin_pruners() -> None:
    for name in BUILTIN_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module: show it
                raise


def load_plugin(spec: str) -> None:
    """Import a user's pruner registrations from a file path or an importable module name."""
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        if not path.is_file():
            raise UserError(f"--plugin {spec}: file not found; pass a .py file or an importable module name")
        module_name = f"laasp_plugin_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"--plugin {spec} failed to import: {type(exc).__name__}: {exc}") from exc
        return
    try:
        importlib.import_module(spec)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"--plugin {spec} failed to import: {type(exc).__name__}: {exc}") from exc


def build_pruner_config(name: str, options: dict[str, Any], recipe: Any) -> Any:
    """The pruner's Config from flag values, unset fields taken from the recipe, then defaults.

    Returns the config; raises UserError for a missing required value.
    """
    cls = PRUNERS.get(name)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls.Config):
        if options.get(f.name) is not None:
            values[f.name] = options[f.name]
        elif hasattr(recipe, f.name):
            values[f.name] = getattr(recipe, f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"pruner {name} needs --{f.name.replace('_', '-')}")
    return cls.Config(**values)


def unused_options(name: str, options: dict[str, Any]) -> list[str]:
    """Flags the user set that the chosen pruner does not read (reported, not silently dropped)."""
    fields = {f.name for f in dataclasses.fields(PRUNERS.get(name).Config)}
    return sorted(k for k, v in options.items() if v is not None and k not in fields)


def run_pruning_schedule(ctx) -> None:
    """train -> prune (pruner-specific, may recover) -> top up to the epoch budget -> finetune.

    Each stage is resumable: epochs already in the history are not trained again, and a
    pruner that saved its progress in ``ctx.pruner_state`` continues from there.
    """
    cfg = ctx.config
    pcfg = cfg.pruner_config
    if ctx.stage == "train":
        ctx.train(range(ctx.epochs_in_phase("train"), pcfg.prune_epoch), "train")
        # The unpruned network's accuracy when pruning starts. (The unpruned *baseline* of a
        # table is a separate `train` run to the full epoch count; this is not it.)
        if pcfg.prune_epoch > 0 or cfg.init_checkpoint:
            ctx.pre_prune = ctx.engine.evaluate(ctx.model)
        ctx.stage = "prune"
        ctx.checkpoint()
    if ctx.stage == "prune":
        ctx.pruner_fields = PRUNERS.get(cfg.pruner)(pcfg).prune(ctx)
        ctx.pruner_state = None
        ctx.stage = "top_up"
        ctx.checkpoint()
    finetune_epochs = cfg.epochs - pcfg.prune_epoch
    if ctx.stage == "top_up":
        top_up = _top_up_epochs(ctx, finetune_epochs)
        if top_up > 0:
            # Extra epochs to match another run's total budget, trained the way LAASP recovers:
            # at the learning rate of prune_epoch, right after pruning.
            done = ctx.epochs_in_phase("budget")
            ctx.train([pcfg.prune_epoch] * (top_up - done), "budget", fixed_lr=cfg.optim.lr_at(pcfg.prune_epoch),
                      fresh_optimizer=done == 0)
        ctx.stage = "finetune"
        ctx.state.optimizer = None  # pruning replaced the parameters: a fresh optimizer
        ctx.checkpoint()
    if ctx.stage == "finetune":
        done = ctx.epochs_in_phase("finetune")
        ctx.train(range(pcfg.prune_epoch + done, cfg.epochs), "finetune")


def _top_up_epochs(ctx, finetune_epochs: int) -> int:
    """Epochs to add so the run trains exactly ``epoch_budget`` epochs in all."""
    budget = ctx.config.epoch_budget
    if budget is None:
        return 0
    planned = ctx.state.epochs_trained - ctx.epochs_in_phase("budget") + finetune_epochs
    if planned > budget:
        print(f"note: this run trains {planned} epochs, more than --epoch-budget {budget}; nothing added")
    return max(0, budget - planned)
