"""What a pruner is: the `PRUNERS` registry, the `Pruner` base class, the `PruneSchedule`
settings every pruner's config starts with, and the `StepResult` every trace holds.

A pruner is a class registered with ``@PRUNERS.register(name)``, with a typed ``Config``
dataclass (validated once, at the edge) and a ``prune(ctx)`` method called at ``prune_epoch``
by the one schedule every pruner runs in (`harness.job.schedule`).
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.errors import UserError
from harness.registry import Registry

PRUNERS: Registry[type["Pruner"]] = Registry("pruner")


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
