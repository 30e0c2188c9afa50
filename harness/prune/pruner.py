"""What a pruner is: the `PRUNERS` registry, the `Pruner` base class and its lifecycle, the
`PruneSchedule` settings every pruner's config starts with, the `StepResult` every trace holds,
and the `MethodCard` that says where a method comes from.

A pruner is a class registered with ``@PRUNERS.register(name)``, with a typed ``Config``
dataclass (validated once, at the edge) and a ``prune(ctx)`` method called at ``prune_epoch``
by the one schedule every pruner runs in (`harness.job.schedule`). Methods that act during
training (regularizers, soft masks, iterative steps, data-driven scores) override the other
hooks of the lifecycle; each hook a pruner leaves alone costs nothing.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar, TypeVar

from harness.errors import UserError
from harness.registry import Registry

PRUNERS: Registry[type["Pruner"]] = Registry("pruner")
T = TypeVar("T")


def decide(ctx, choose: Callable[[], T]) -> T:
    """``choose()``, made once: in a data-parallel run (``--workers``) rank 0 calls it and every
    rank gets its answer, so the ranks never apply different removals or masks (a score computed
    on every rank could round differently). A context without a ``world`` (one process, a test's
    stand-in) just calls it. ``choose`` must not use collectives; its answer must pickle."""
    world = getattr(ctx, "world", None)
    return choose() if world is None else world.decide(choose)


def cap_count(filters: int, max_prune_rate: float) -> int:
    """Most filters a layer of ``filters`` may lose under the per-layer cap; it always keeps one."""
    return max(0, min(int(max_prune_rate * filters + 1e-9), filters - 1))


@dataclass(frozen=True)
class PruneSchedule:
    """The schedule settings every pruner's Config starts with (subclass it and add your own)."""

    target_flops: float          # FLOPs reduction to reach, e.g. 0.55, relative to the unpruned model
    prune_epoch: int = 0         # epochs of training before pruning (0: prune the start network)
    max_prune_rate: float = 1.0  # per-layer cap on the pruned fraction; a layer always keeps >= 1 filter
    # Fields whose default here is the method's own and wins over the model family's recipe
    # (e.g. SFP and FPGM mask from epoch 0, as their papers train); a flag still sets them.
    OWN_DEFAULTS: ClassVar[tuple[str, ...]] = ()

    def validate(self, job=None) -> None:
        if not 0 < self.target_flops < 1:
            raise UserError(f"--target-flops must be a fraction in (0, 1), e.g. 0.55 for 55% fewer FLOPs "
                            f"(got {self.target_flops})")
        self.validate_schedule(job)

    def validate_schedule(self, job=None) -> None:
        """The checks besides the target (for configs that may give hand-set rates instead)."""
        if not 0 < self.max_prune_rate <= 1:
            raise UserError(f"--max-prune-rate must be in (0, 1] (got {self.max_prune_rate})")
        if self.prune_epoch < 0:
            raise UserError(f"--prune-epoch must be >= 0 (got {self.prune_epoch})")
        if job is not None and self.prune_epoch > job.epochs:
            raise UserError(f"--prune-epoch {self.prune_epoch} is after the last epoch (--epochs {job.epochs}); "
                            "use a prune epoch <= --epochs")

    def max_reachable_reduction(self, model, input_size: int, in_channels: int) -> float:
        """The highest FLOPs reduction the per-layer cap allows on ``model`` (unpruned): every
        prunable layer, with everything coupled to it, at its cap (`cap_count`), counted by the
        one FLOPs counter on a pruned copy. Every built-in pruner can reach it; a pruner whose
        own rules reach less overrides this."""
        from harness.prune.flops import count_cost, reduction
        from harness.prune.prunable import PrunableNetwork

        work = copy.deepcopy(model).cpu()
        before = count_cost(work, input_size, in_channels).flops
        net = PrunableNetwork(work, input_size, in_channels)
        for layer in net.layers:  # a coupled layer already lost its share through an earlier one
            left = cap_count(layer.original_filters, self.max_prune_rate) - layer.removed
            if left > 0:
                net.remove(layer, list(range(left)))
        return reduction(before, count_cost(work, input_size, in_channels).flops)

    def check_reachable(self, model, input_size: int, in_channels: int, model_name: str = "the model") -> None:
        """Refuse a target the caps make unreachable, before any training (UserError naming the most)."""
        best = self.max_reachable_reduction(model, input_size, in_channels)
        if self.target_flops > best + 1e-9:
            most = math.floor(best * 1e4) / 1e4
            raise UserError(f"--target-flops {self.target_flops:g} is unreachable for {model_name}: with "
                            f"--max-prune-rate {self.max_prune_rate:g} (every prunable layer at its cap) at most "
                            f"{most:.4f} of the FLOPs can go ({100 * best:.1f}%); use --target-flops <= {most:.4f} "
                            "or a higher --max-prune-rate")


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


@dataclass(frozen=True)
class MethodCard:
    """Where a method comes from and how closely we follow it: one row of the README's method
    table and the ``method`` block of every record the pruner writes."""

    paper: str
    official_code: str  # the implementation it was checked against (and at which commit)
    faithful: str       # what follows the paper and its code
    adapted: str        # what differs, and why
    defaults: str       # the defaults used, with their source

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class Pruner(ABC):
    """A pruner's lifecycle in the one schedule (`harness.job.schedule`), in call order:

    ``on_train_start`` -> [each training step: ``after_backward``] -> [each epoch:
    ``on_epoch_end``] -> ``prune`` at ``prune_epoch`` -> more epochs (the same per-step and
    per-epoch hooks) -> ``on_train_end`` after the last epoch. Only ``prune`` is required; the
    engine calls a per-step or per-epoch hook only when the class overrides it. ``ctx.stage``
    says where the schedule is ("train" before the prune point; "prune"; "top_up" and
    "finetune" after it). Anything a hook must remember across epochs goes in `state_dict`,
    which is saved with the run state, so a resumed run continues exactly.
    """

    Config: ClassVar[type]
    method: ClassVar[MethodCard | None] = None  # the README table row; recorded with every run

    def __init__(self, config: Any):
        self.config = config

    def on_train_start(self, ctx) -> None:
        """Before the first epoch the schedule trains, each time it (re)starts: a fresh run or
        a resumed one (after `load_state_dict`). Build what `state_dict` does not hold here."""

    def after_backward(self, ctx) -> None:
        """After each training step's backward pass, before ``optimizer.step()``: gradients are
        unscaled (true values) and may be changed (a regularizer's subgradient, a gradient mask)."""

    def on_epoch_end(self, ctx) -> None:
        """After each training epoch, before its evaluation (soft masks, iterative steps)."""

    def weight_decay(self, ctx) -> float | None:
        """The optimizer's weight decay for the epochs ctx is about to train; None: the run's."""
        return None

    @abstractmethod
    def prune(self, ctx) -> dict[str, Any]:
        """At ``prune_epoch``: remove (or mask) filters of ``ctx.model`` toward
        ``config.target_flops``; return the record fields (`on_train_end` may update them)."""

    def on_train_end(self, ctx) -> dict[str, Any] | None:
        """After the last epoch, before the final evaluation: e.g. remove soft-pruned filters for
        good. Returns record fields that replace those `prune` returned, or None."""
        return None

    def state_dict(self) -> dict[str, Any] | None:
        """What the hooks need to continue after a resume (tensors, numbers, lists, dicts)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict` (called before `on_train_start` when a run resumes)."""

    def uses(self, hook: str) -> bool:
        """Whether this pruner overrides ``hook`` (the engine skips the ones it does not)."""
        return getattr(type(self), hook) is not getattr(Pruner, hook)


def method_table(names: list[str] | None = None) -> str:
    """The README's method table (markdown) from the registered pruners' cards; the
    ``tp:<Importance>`` family is one row."""
    rows, seen_family = [], False
    for name in names if names is not None else PRUNERS.names():
        card = PRUNERS.get(name).method
        if card is None:
            continue
        if name.startswith("tp:"):
            if seen_family:
                continue
            seen_family, importance = True, name[3:]
            name = "tp:<Importance>"
            card = MethodCard(*(v.replace(importance, "<Importance>") for v in asdict(card).values()))
        rows.append(f"| `{name}` | " + " | ".join(v.replace("|", "\\|") for v in asdict(card).values()) + " |")
    head = "| pruner | paper | official code checked against | faithful | adapted | defaults |\n|---|---|---|---|---|---|"
    return "\n".join([head, *rows]) + "\n"


def method_block(name: str, pruner: Pruner) -> dict[str, Any]:
    """The record's ``method`` block: the pruner's card, or (a plugin without one) its ``source``."""
    if pruner.method is not None:
        return pruner.method.as_dict()
    return {"source": PRUNERS.meta(name).get("source")}


def check_reachable(config: Any, model, input_size: int, in_channels: int, model_name: str = "the model") -> None:
    """`PruneSchedule.check_reachable` for any pruner config that has it (a plugin's config may not)."""
    check = getattr(config, "check_reachable", None)
    if check is not None:
        check(model, input_size, in_channels, model_name)


def build_pruner_config(name: str, options: dict[str, Any], recipe: Any) -> Any:
    """The pruner's Config from flag values, unset fields taken from the recipe, then defaults.

    Returns the config; raises UserError for a missing required value.
    """
    cls = PRUNERS.get(name)
    values: dict[str, Any] = {}
    own = getattr(cls.Config, "OWN_DEFAULTS", ())
    for f in dataclasses.fields(cls.Config):
        if options.get(f.name) is not None:
            values[f.name] = options[f.name]
        elif hasattr(recipe, f.name) and f.name not in own:
            values[f.name] = getattr(recipe, f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"pruner {name} needs --{f.name.replace('_', '-')}")
    return cls.Config(**values)


def unused_options(name: str, options: dict[str, Any]) -> list[str]:
    """Flags the user set that the chosen pruner does not read (reported, not silently dropped):
    those its Config lacks, and those it holds but will not read with these values (a Config's
    ``idle_options(options)``, e.g. a one-shot baseline's iterative settings)."""
    config = PRUNERS.get(name).Config
    fields = {f.name for f in dataclasses.fields(config)}
    idle = set(config.idle_options(options)) if hasattr(config, "idle_options") else set()
    return sorted(k for k, v in options.items() if v is not None and (k not in fields or k in idle))
