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

from baselines.common import (CoupledGroup, FlopsModel, OneShotPruner, Plan, group_scores, plan_from_ranking,
                              ranked_events)
from harness.prune.prunable import PrunableNetwork
from harness.prune.pruner import PRUNERS, MethodCard


def global_events(groups: list[CoupledGroup], generator: torch.Generator) -> list[tuple[float, int, int]]:
    """(normalised L1, group index, root channel) for every removable filter, weakest first."""
    scores = {}
    for g in groups:
        l1 = group_scores(g, "l1", generator)
        scores[g.index] = l1 / l1.mean().clamp_min(1e-12)
    return ranked_events(groups, scores)


@PRUNERS.register("l1_global", source="global L1 ranking, each filter's L1 divided by its layer's mean L1")
class L1Global(OneShotPruner):
    criterion = "l1"
    method = MethodCard(
        paper="none: a global-L1 control of the harness (torch-pruning's default normalisation for global ranking)",
        official_code="none: baselines/global_l1.py",
        faithful="one ranking of all filters by L1 divided by the mean L1 of the filter's layer (coupled groups: summed "
                 "over their convs)",
        adapted="not a published method; per-layer cap, hard and one-shot at prune_epoch to the FLOPs target",
        defaults="the run's recipe; the shared schedule's fine-tuning",
    )

    def plan(self, ctx, net: PrunableNetwork, groups: list[CoupledGroup], model: FlopsModel, budget: float,
             tolerance: float, generator: torch.Generator) -> Plan:
        return plan_from_ranking(global_events(groups, generator), model, budget, tolerance, self.criterion,
                                 score_normalisation="layer_mean_l1")
