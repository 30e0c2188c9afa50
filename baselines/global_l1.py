"""``l1_global``: one L1 ranking across all layers, filters removed until the FLOPs target.

Raw L1 norms are not comparable across layers: a filter's L1 grows with its element count
(27 weights in a CIFAR stem filter, 4,608 in a 512-channel 3x3 conv) and each layer has its own
weight scale (Kaiming fan-out init gives std ~ 1/sqrt(filters x k^2); weight decay and
training move layers differently). Every prunable conv here is followed by batch norm, which
rescales each channel, so a layer's absolute scale says nothing about importance. The score is
therefore **L1 divided by the mean L1 of the filter's layer** ("how weak is this filter among
its layer's peers"): it removes both the element-count and the scale bias, where dividing by
the element count (the mean |w|) would remove only the first. This is also torch-pruning's
default normalisation for global pruning (``normalizer="mean"``).

For a coupled group (channels shared through a residual addition, or an expansion conv with
its depthwise conv) the channel's L1 is summed over the group's convs and normalised by the
group's mean: the group is one "layer" of the ranking. A per-layer cap (``max_prune_rate``,
and always at least one filter kept) stops any layer from being wiped out: a capped layer's
remaining filters simply leave the ranking. Ties are broken by module order, then channel.
The ranking is followed exactly except, possibly, at its very end: a filter whose removal
would overshoot the target by more than 0.5 pt is passed over (`baselines.common.solve`).
"""
from __future__ import annotations

import torch

from baselines.common import CoupledGroup, FlopsModel, OneShotPruner, Plan, group_scores, solve
from harness.prune.prunable import PrunableNetwork
from harness.prune.pruner import PRUNERS


def global_events(groups: list[CoupledGroup], generator: torch.Generator) -> list[tuple[float, int, int]]:
    """(normalised L1, group index, root channel) for every removable filter, weakest first."""
    events = []
    for g in groups:
        scores = group_scores(g, "l1", generator)
        normalised = scores / scores.mean().clamp_min(1e-12)
        order = torch.argsort(normalised, stable=True)[: g.cap]
        events += [(float(normalised[k]), g.index, int(k)) for k in order]
    events.sort()
    return events


@PRUNERS.register("l1_global", source="global L1 ranking, each filter's L1 divided by its layer's mean L1")
class L1Global(OneShotPruner):
    criterion = "l1"

    def plan(self, ctx, net: PrunableNetwork, groups: list[CoupledGroup], model: FlopsModel, budget: float,
             tolerance: float, generator: torch.Generator) -> Plan:
        events = global_events(groups, generator)
        sol = solve([g for _, g, _ in events], model, budget, tolerance)
        removed: dict[int, list[int]] = {}
        for pos in sol.taken:
            _, g, k = events[pos]
            removed.setdefault(g, []).append(k)
        return Plan(removed, sol.flops, self.criterion, sol.skipped, {"score_normalisation": "layer_mean_l1"})
