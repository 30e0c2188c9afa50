"""Uniform-ratio baselines: the same pruned fraction in every prunable conv layer.

- ``l1_uniform``: Li et al., "Pruning Filters for Efficient ConvNets" (ICLR 2017): the filters
  with the smallest L1 norm of their weights go.
- ``gm_uniform``: the geometric-median criterion of He et al., "Filter Pruning via Geometric
  Median" (CVPR 2019), alone: the filters nearest the layer's geometric median go, i.e. those
  with the smallest sum of Euclidean distances to the other filters, on the raw weights
  (criterion ``eucl``), pruned once and hard. A criterion-only control: the published method,
  soft masks every epoch, is ``fpgm`` (`baselines.soft`). Records written before the rename
  say ``fpgm`` for this pruner; `harness.results.load.pruner_of` reads them as ``gm_uniform``.
  torch-pruning's FPGMImportance measures distances between *squared magnitudes* |w|^2, which
  discards signs and is not the paper's criterion; tests/test_baselines.py shows a layer where
  the two disagree.
- ``random``: random filters at the same uniform ratio (seeded from the run's seed).

The ratio r is solved for the FLOPs target. Layer sizes differ (16/32/64 filters in the CIFAR
ResNets), so r x filters is rarely an integer: a layer of C filters loses round(r x C). As r
grows, layer g's k-th filter goes at r = (k - 1/2) / C_g; the solver walks these events in
order of r (ties: module order) and bisects for the fewest that meet the target, so every
layer's rate is within 1/(2 C) of r. If that last filter overshoots the target by more than
0.5 pt (one channel of a wide coupled group, see `baselines.common.solve`), its group is
passed over and keeps one filter more (rate within 3/(2 C) of r; listed in the record's
``passed_over``) while the walk finishes on smaller layers. Coupled layers (a residual stage's
shared channels, MobileNetV2's expansion + depthwise pair) are one group: the ratio applies to
the group once, scored by the criterion summed over its convs (see `baselines.common`), so all
of them lose the same channels and report the same rate.
"""
from __future__ import annotations

import torch

from baselines.common import CoupledGroup, FlopsModel, OneShotPruner, Plan, group_scores, solve
from baselines.rates import counts_from_rates, rate_scopes
from harness.prune.criteria import lowest
from harness.prune.prunable import PrunableNetwork
from harness.prune.pruner import PRUNERS, MethodCard

_CONTROL = dict(
    official_code="none: a criterion-only control of the harness (baselines/uniform.py)",
    adapted="not a published method: every coupled group (residual ones included, scored summed over their convs) "
            "at one uniform ratio solved for the FLOPs target, hard and one-shot at prune_epoch",
    defaults="the run's recipe; the shared schedule's fine-tuning",
)


def uniform_events(groups: list[CoupledGroup]) -> list[tuple[float, int]]:
    """(ratio at which the filter goes, group index) for every removable filter, in removal order.

    The ratio is of the group's original channels, counting those already gone: on the iterative
    schedule each step continues the one uniform ratio, so the network ends near the one-shot
    structure instead of drifting toward equal widths (the widest group's next filter would
    otherwise always be the cheapest in ratio)."""
    events = [((g.original - g.channels + k - 0.5) / g.original, g.index) for g in groups for k in range(1, g.cap + 1)]
    events.sort()
    return events


class UniformPruner(OneShotPruner):
    """Prune every coupled group at one ratio, ranking its channels by ``criterion`` (or, with
    hand-set ``rates`` in the config, at those rates)."""

    criterion = "l1"
    keep_floor = False  # hand-set rates: prune int(C x rate) (False) or keep int(C x (1 - rate)) (True)

    def channel_scores(self, group: CoupledGroup, generator: torch.Generator) -> torch.Tensor:
        """Lowest go first."""
        return group_scores(group, self.criterion, generator)

    def hand_rates(self) -> tuple[float, ...] | None:
        """Rates set by hand instead of a solved target (``--rates``; PFEC: also its presets)."""
        return getattr(self.config, "rates", None)

    def plan(self, ctx, net: PrunableNetwork, groups: list[CoupledGroup], model: FlopsModel, budget: float,
             tolerance: float, generator: torch.Generator) -> Plan:
        rates = self.hand_rates()
        if rates:
            scopes = rate_scopes(ctx.config.model, len(rates), [g.root.name for g in groups])
            counts = counts_from_rates(rates, scopes, [g.channels for g in groups], self.keep_floor)
            ratio, flops, skipped = None, model.flops(counts), []
        else:
            events = uniform_events(groups)
            sol = solve([g for _, g in events], model, budget, tolerance)
            counts, flops, skipped = sol.counts, sol.flops, sol.skipped
            ratio = events[sol.taken[-1]][0] if sol.taken else 0.0
        removed = {}
        for g in groups:  # scores for every group, also unpruned ones: the same random stream for any target
            scores = self.channel_scores(g, generator)
            if counts[g.index]:
                removed[g.index] = lowest(scores, counts[g.index])
        return Plan(removed, flops, self.criterion, skipped, {"uniform_ratio": ratio})


@PRUNERS.register("l1_uniform", source="Li et al. 2017: uniform ratio per layer, smallest L1 norm")
class L1Uniform(UniformPruner):
    criterion = "l1"
    method = MethodCard(paper="criterion of Li et al., Pruning Filters for Efficient ConvNets, ICLR 2017 (the method: "
                              "pfec)", faithful="L1 norm of each filter, smallest removed", **_CONTROL)


@PRUNERS.register("gm_uniform", source="He et al. 2019's geometric-median criterion alone, hard and one-shot "
                                        "at a uniform ratio per layer (criterion-only control for fpgm)")
class GMUniform(UniformPruner):
    criterion = "eucl"
    method = MethodCard(paper="criterion of He et al., Filter Pruning via Geometric Median, CVPR 2019 (the method: "
                              "fpgm)", faithful="smallest sum of Euclidean distances to the layer's other filters, on "
                                                "the raw weights", **_CONTROL)


@PRUNERS.register("random", source="random filters at a uniform ratio per layer (sanity baseline)")
class RandomUniform(UniformPruner):
    criterion = "random"
    method = MethodCard(paper="none: random filters (sanity baseline)", faithful="random ranking seeded from the run's "
                                                                                "seed", **_CONTROL)
