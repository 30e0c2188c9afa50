"""What the one-shot baselines share: config, coupled groups, an exact FLOPs model, the solver.

A one-shot baseline scores every filter once on the network as it is at ``prune_epoch``
(Li et al.'s "independent" strategy: no re-scoring between layers), decides how many filters
each layer loses, removes them all, and hands the network back to the schedule for
fine-tuning. Three pieces make that exact and fast:

- **Coupled groups.** In a residual stage every conv that feeds the addition (the second or
  third conv of each block, the projection shortcut, in stage 1 of the CIFAR ResNets even the
  stem) shares its output channels: torch-pruning removes channel k from all of them at once.
  In MobileNetV2 the expansion 1x1 conv and its depthwise conv are coupled the same way. A
  `CoupledGroup` is one such set of prunable convs (most groups have one member). A baseline
  removes channels per group, so every member of a group loses exactly the same channels.
- **Group score.** A criterion scores each member conv on its own weights and the group's
  score of channel k is the sum over members. For ``l1`` that is exactly the L1 norm of the
  concatenated coupled filter; for a single-member group (every VGG layer, every first conv of
  a block) it is the criterion itself, unchanged.
- **FLOPs model.** The project's counter (`harness.prune.flops`) counts conv/linear MACs, and a
  layer's MACs scale exactly with (kept output channels / original) x (kept input channels /
  original), once for a depthwise conv. `FlopsModel` evaluates that product for any vector of
  per-group removal counts in microseconds, so the FLOPs target is solved by bisection without
  pruning copies. After the real removal the harness counter measures the result; the tests
  pin model == counter on every zoo model.

The solver takes the filters in a fixed removal order (a list of group indices, one entry per
filter) and bisects for the shortest prefix whose FLOPs meet the budget. Removing filters
never adds MACs, so FLOPs fall monotonically along the order and the bisection is exact. One
filter is usually worth well under 0.5% of the FLOPs, but one channel of a wide coupled group
can be worth more (2.2% for ResNet-56's stage-1 channels, shared by 10 convs and read by 11),
so when the prefix's last filter overshoots by more than ``FINISH_TOLERANCE`` (0.5 pt) that
group is passed over and the order continues with the others (`solve`): every zoo model then
lands within 0.5 pt above its target.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from baselines.schedules import SCHEDULES, ScheduleConfig
from harness.prune.criteria import CRITERIA, CriterionInput, filter_rows
from harness.prune.flops import count_cost, layer_flops
from harness.prune.flops import reduction as flops_reduction
from harness.prune.prunable import Layer, PrunableNetwork
from harness.prune.pruner import Pruner, StepResult, cap_count, decide

log = logging.getLogger("baselines")


@dataclass(frozen=True)
class BaselineConfig(ScheduleConfig):
    """Settings every one-shot baseline reads: the shared schedule fields and the choice of a
    one-shot or iterative schedule (`baselines.schedules`); the CLI fills unset ones from the
    model's recipe."""


# ------------------------------------------------------------------------- coupled groups
@dataclass
class CoupledGroup:
    """Prunable convs that share their output channels; channel k is removed from all or none."""

    index: int
    root: Layer                            # the first member in module order; removals go through it
    members: list[tuple[Layer, list[int]]]  # (layer, its filter index for each root channel k)
    channels: int                          # now
    cap: int                               # most channels the group may lose now
    out_modules: list[nn.Module] = field(default_factory=list)  # convs/linears whose outputs it cuts
    in_modules: list[nn.Module] = field(default_factory=list)   # ... whose inputs it cuts
    original: int = 0                      # channels before pruning started (0: ``channels``)

    def __post_init__(self) -> None:
        self.original = self.original or self.channels

    @property
    def names(self) -> list[str]:
        return [layer.name for layer, _ in self.members]


def is_residual_tied(group: CoupledGroup) -> bool:
    """Whether the group's channels are shared through a residual addition: more than one
    member conv that is not depthwise (an expansion conv and its depthwise conv are one unit,
    not a residual tie)."""
    return sum(1 for layer, _ in group.members if not _depthwise(layer.module)) > 1


def _depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def group_rows(group: CoupledGroup) -> torch.Tensor:
    """Row k: the weights of channel k's filter in every member conv, concatenated (float64,
    CPU). For a one-conv group, exactly that conv's filters."""
    return torch.cat([filter_rows(layer.module)[idxs].cpu() for layer, idxs in group.members], dim=1)


def coupled_groups(net: PrunableNetwork, max_prune_rate: float = 1.0) -> list[CoupledGroup]:
    """The coupled groups of the network as it is. The cap counts from each layer's original
    filters (``Layer.original_filters``), less those already gone, so it stays relative to the
    unpruned network across the steps of the iterative schedule."""
    groups: list[CoupledGroup] = []
    assigned: set[str] = set()
    for layer in net.layers:
        if layer.name in assigned:
            continue
        channels = layer.filters
        members: list[tuple[Layer, list[int]]] = []
        outs: dict[nn.Module, None] = {}
        ins: dict[nn.Module, None] = {}
        for dep, idxs in net.group(layer, list(range(channels))):
            module = dep.target.module
            if not isinstance(module, (nn.Conv2d, nn.Linear)) or module not in net.names:
                continue
            if net.dg.is_out_channel_pruning_fn(dep.handler):
                outs[module] = None
                name = net.names[module]
                if name in net.by_name and name not in {m.name for m, _ in members}:
                    members.append((net.by_name[name], [int(i) for i in idxs]))
            else:
                ins[module] = None
        members.sort(key=lambda m: net.layers.index(m[0]))  # ``layer`` (the root) comes first
        assigned.update(m.name for m, _ in members)
        original = layer.original_filters
        cap = max(0, cap_count(original, max_prune_rate) - (original - channels))
        groups.append(CoupledGroup(len(groups), layer, members, channels, cap, list(outs), list(ins), original))
    return groups


# ------------------------------------------------------------------------- FLOPs model
class FlopsModel:
    """Exact conv/linear MACs of the network after removing ``counts[g]`` channels of each group."""

    def __init__(self, net: PrunableNetwork, groups: Sequence[CoupledGroup]):
        macs = layer_flops(net.model, net.input_size, net.in_channels)
        self.current = sum(macs.values())
        touched: dict[str, set[int]] = {}
        for g in groups:
            for m in [*g.out_modules, *g.in_modules]:
                touched.setdefault(net.names[m], set()).add(g.index)
        self.fixed = sum(v for name, v in macs.items() if name not in touched)
        # a depthwise conv is cut on both sides by the same group: the set counts it once
        self.terms = [(macs[name], tuple(sorted(gs))) for name, gs in touched.items() if name in macs]
        self.channels = [g.channels for g in groups]

    def flops(self, counts: Sequence[int]) -> int:
        total = self.fixed
        for macs, gs in self.terms:
            num, den = macs, 1
            for g in gs:
                num *= self.channels[g] - counts[g]
                den *= self.channels[g]
            total += num // den
        return total


FINISH_TOLERANCE = 0.005  # of the baseline FLOPs: how far past the target the last filter may land


@dataclass
class Solution:
    taken: list[int]      # positions in the removal order that are removed
    counts: list[int]     # filters removed per group
    flops: int            # predicted MACs afterwards
    skipped: list[int]    # groups passed over at the end because one filter overshoots too far


def solve(order: Sequence[int], model: FlopsModel, budget: float, tolerance: float) -> Solution:
    """The filters to remove, following ``order`` (group index per filter), to get FLOPs <= ``budget``.

    First the shortest prefix of ``order`` that meets the budget (bisection: FLOPs fall
    monotonically along the order). When its last filter overshoots the budget by more than
    ``tolerance`` MACs (one channel of a wide coupled group can be worth 2% of a network's
    FLOPs: ResNet-56's stage-1 channels), that group is passed over and the walk goes on
    along the order with the other groups, finishing on a filter that lands within the
    tolerance. A passed-over group keeps its channel order (no later channel of it goes
    either). If no such finish exists, the plain prefix is used. When even the whole order
    stays above the budget, everything in it is removed and the caller reports the miss.
    """
    n_groups = len(model.channels)

    def counts(m: int) -> list[int]:
        c = [0] * n_groups
        for g in order[:m]:
            c[g] += 1
        return c

    lo, hi = 0, len(order)
    if model.flops(counts(hi)) > budget:
        c = counts(hi)
        return Solution(list(range(hi)), c, model.flops(c), [])
    while lo < hi:  # invariant: prefix hi meets the budget
        mid = (lo + hi) // 2
        if model.flops(counts(mid)) <= budget:
            hi = mid
        else:
            lo = mid + 1
    plain = Solution(list(range(hi)), counts(hi), model.flops(counts(hi)), [])
    if hi == 0 or plain.flops >= budget - tolerance:
        return plain
    taken, c, skipped = list(range(hi - 1)), counts(hi - 1), []
    for pos in range(hi - 1, len(order)):
        g = order[pos]
        if g in skipped:
            continue
        c[g] += 1
        flops = model.flops(c)
        if flops > budget:
            taken.append(pos)
        elif flops >= budget - tolerance:
            taken.append(pos)
            return Solution(taken, c, flops, skipped)
        else:
            c[g] -= 1
            skipped.append(g)
    return plain


# ------------------------------------------------------------------------- scores
def group_scores(group: CoupledGroup, criterion: str, generator: torch.Generator) -> torch.Tensor:
    """Score of each root channel: the criterion on every member conv, summed (float64, CPU)."""
    fn = CRITERIA.get(criterion)
    total = torch.zeros(group.channels, dtype=torch.float64)
    for layer, idxs in group.members:
        scores = fn(CriterionInput(layer.module, layer.bn, generator)).detach().double().cpu()
        total += scores[idxs]
    return total


def ranked_events(groups: Sequence[CoupledGroup], scores: dict[int, torch.Tensor]) -> list[tuple[float, int, int]]:
    """(score, group index, root channel) of every removable channel, lowest first: a global
    ranking across groups, each group offering at most its cap (ties: module order, channel)."""
    events = []
    for g in groups:
        s = scores[g.index]
        order = torch.argsort(s, stable=True)[: g.cap]
        events += [(float(s[k]), g.index, int(k)) for k in order]
    events.sort()
    return events


def plan_from_ranking(events: list[tuple[float, int, int]], model: FlopsModel, budget: float, tolerance: float,
                      criterion: str, **extra: Any) -> "Plan":
    """Follow a global ranking (`ranked_events`) until the budget (`solve`): the removal plan."""
    sol = solve([g for _, g, _ in events], model, budget, tolerance)
    removed: dict[int, list[int]] = {}
    for pos in sol.taken:
        _, g, k = events[pos]
        removed.setdefault(g, []).append(k)
    return Plan(removed, sol.flops, criterion, sol.skipped, extra)


# ------------------------------------------------------------------------- the pruner skeleton
@dataclass
class Plan:
    """Which root channels each group loses, and what the planner wants in the record."""

    removed: dict[int, list[int]]       # group index -> root channel indices
    predicted_flops: int
    criterion: str
    passed_over: list[int] = field(default_factory=list)  # groups `solve` passed over at the end
    extra: dict[str, Any] = field(default_factory=dict)


class OneShotPruner(Pruner):
    """Score once, plan the whole removal against the FLOPs budget, remove, return the record."""

    Config = BaselineConfig
    criterion: str = "l1"  # recorded in the trace and removed_per_criterion

    def plan(self, ctx, net: PrunableNetwork, groups: list[CoupledGroup], model: FlopsModel, budget: float,
             tolerance: float, generator: torch.Generator) -> Plan:
        """Decide the removal: FLOPs <= ``budget`` MACs, landing within ``tolerance`` of it if possible."""
        raise NotImplementedError

    def groups(self, net: PrunableNetwork) -> list[CoupledGroup]:
        """The groups this pruner may cut (all of them; PFEC: the block-internal ones)."""
        return coupled_groups(net, self.config.max_prune_rate)

    def prune(self, ctx) -> dict[str, Any]:
        # a plugin's Config may lack the schedule fields: one-shot
        return SCHEDULES.get(getattr(self.config, "schedule", "oneshot"))(self, ctx)

    def prune_once(self, ctx) -> dict[str, Any]:
        """The one-shot schedule: the whole removal planned and applied at once."""
        cfg = self.config
        start = time.perf_counter()
        net = PrunableNetwork(ctx.model, ctx.data.image_size, ctx.data.in_channels)
        budget = (1.0 - (cfg.target_flops or 0.0)) * ctx.baseline_cost.flops
        generator = torch.Generator().manual_seed(ctx.config.seed)
        plan, groups = self.remove_planned(ctx, net, budget, generator)
        selection_s = time.perf_counter() - start
        ctx.add_time("selection_s", selection_s)
        flops = counted_flops(ctx, plan, type(self).__name__)
        reduction = flops_reduction(ctx.baseline_cost.flops, flops)
        reached = report_reach(ctx, cfg, flops, budget, reduction)
        removed = sum(len(v) for v in plan.removed.values())
        ctx.report({"phase": "prune", "step": 1, **ctx.cost_fields()})
        trace = [step_entry(1, plan.criterion, removed, reduction, selection_s, ctx.state.epochs_trained)]
        counts = {g.index: len(plan.removed.get(g.index, [])) for g in groups}
        return record_fields(cfg, reached, trace, plan.criterion, removed, layer_rates(net, groups, counts),
                             [name for g in plan.passed_over for name in groups[g].names], **plan.extra)

    def remove_planned(self, ctx, net: PrunableNetwork, budget: float,
                       generator: torch.Generator) -> tuple[Plan, list[CoupledGroup]]:
        """Plan a removal on the network as it is, to FLOPs <= ``budget`` MACs, and remove it."""
        groups = self.groups(net)
        model = FlopsModel(net, groups)
        tolerance = FINISH_TOLERANCE * ctx.baseline_cost.flops
        plan = decide(ctx, lambda: self.plan(ctx, net, groups, model, budget, tolerance, generator))  # rank 0's
        for g in groups:
            idxs = plan.removed.get(g.index, [])
            if idxs:
                net.remove(g.root, sorted(idxs))
        return plan, groups


SCHEDULES.register("oneshot")(OneShotPruner.prune_once)


def counted_flops(ctx, plan: Plan, who: str) -> int:
    """The pruned network's MACs by the harness counter (warns when the FLOPs model missed)."""
    flops = count_cost(ctx.model, ctx.data.image_size, ctx.data.in_channels).flops
    if flops != plan.predicted_flops:  # the FLOPs model missed a layer type: trust the counter
        log.warning("%s: FLOPs model predicted %d MACs, counter says %d", who, plan.predicted_flops, flops)
    return flops


# ------------------------------------------------------------------------- record fields
def report_reach(ctx, cfg, flops: int, budget: float, reduction: float) -> bool | None:
    """Whether the FLOPs target was met (None for hand-set rates: there is no target); says so when not."""
    if cfg.target_flops is None:
        return None
    reached = flops <= budget + 1e-6
    if not reached:
        print(f"{ctx.config.pruner}: target FLOPs reduction {cfg.target_flops:.3f} is unreachable under the "
              f"per-layer cap {cfg.max_prune_rate}: stopped at {reduction:.3f}")
    return reached


def step_entry(step: int, criterion: str, removed: int, reduction: float, selection_s: float,
               epochs_trained: int, **extra: Any) -> dict[str, Any]:
    """One trace entry of a baseline (the same keys as LAASP's steps, on layer ``"*"``)."""
    result = StepResult(step=step, layer="*", criterion=criterion, removed=removed, loss=None,
                        runner_up_loss=None, flops_reduction=reduction, candidates=None, tied_criteria=[],
                        selection_s=selection_s)
    return {**result.as_dict(), "epochs_trained": epochs_trained, **extra}


def layer_rates(net: PrunableNetwork, groups: list[CoupledGroup], counts: dict[int, int]) -> dict[str, float]:
    """Pruned fraction of every prunable layer (a group's members share its rate; others 0)."""
    rates = {layer.name: counts.get(g.index, 0) / g.channels for g in groups for layer, _ in g.members}
    return {layer.name: rates.get(layer.name, 0.0) for layer in net.layers}


def record_fields(cfg, reached: bool | None, trace: list[dict[str, Any]], criterion: str, removed: int,
                  rates: dict[str, float], passed_over: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """The record fields every baseline returns (LAASP's keys, so every record has the same ones)."""
    return {
        "target_flops": cfg.target_flops,
        "target_reached": reached,
        "trace": trace,
        "removed_per_criterion": {criterion: removed},
        "layer_rates": rates,
        # LAASP's remaining keys, not applicable to a baseline: kept so that every record has the
        # same top-level fields
        "recoveries": 0,
        "subset_size": None,
        "selection": None,
        "race": None,
        "approx_agreement": None,
        # layers whose group lost one channel fewer than the order gave it, to land near the target
        "passed_over": passed_over or [],
        **extra,
    }
