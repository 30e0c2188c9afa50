"""``hrank``: Lin, Ji, Wang, Zhang, Zhang, Tian, Shao, "HRank: Filter Pruning using High-Rank
Feature Map" (CVPR 2020), as lmbxmu/HRank computes it.

Each channel's score is the matrix rank of its feature map, after the batch norm and ReLU
that follow the conv, averaged over a fixed set of augmented training images in eval mode
(`harness.prune.probe`; the official ``rank_generation.py`` takes 5 batches of 128 from the
augmented training loader, the paper says 500 images suffice: 500 here, ``--rank-images``).
The lowest-rank channels of each layer go, ``int(C x rate)`` of them. A coupled group
(residual stage) is scored by the mean rank over its convs' outputs.

Adapted: the official code fixes the ranks once on a pretrained network and prunes layer by
layer with a fine-tuning round after each (55 rounds for ResNet-56); here the ranks are taken
at ``prune_epoch`` and every layer is pruned at once at a uniform rate solved for the FLOPs
target (``--rates`` gives hand-set per-layer rates back), then the shared schedule fine-tunes.
The official code ranks a block's second conv on the block output (after the residual
addition) and masks those convs although their channels cannot be removed; here that conv's
own output is ranked and the residual group is pruned as one unit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from baselines.common import CoupledGroup, FlopsModel, Plan
from baselines.rates import RatesConfig
from baselines.schedules import ScheduleConfig
from baselines.uniform import UniformPruner
from harness.errors import UserError
from harness.prune.prunable import PrunableNetwork
from harness.prune.probe import RankRecorder
from harness.prune.pruner import PRUNERS, MethodCard


@dataclass(frozen=True)
class HRankConfig(RatesConfig, ScheduleConfig):
    rank_images: int = 500  # the paper: "a small number of images (500) suffice"

    def validate(self, job=None) -> None:
        super().validate(job)
        if self.rank_images < 1:
            raise UserError(f"--rank-images must be >= 1 (got {self.rank_images})")


HRANK_CARD = MethodCard(
    paper="Lin, Ji, Wang, Zhang, Zhang, Tian, Shao: HRank: Filter Pruning using High-Rank Feature Map, CVPR 2020",
    official_code="lmbxmu/HRank @c03ac85 (rank_generation.py get_feature_hook, mask.py)",
    faithful="average matrix rank (torch.linalg.matrix_rank, default tolerance) of each channel's feature map after "
             "batch norm and ReLU, over augmented training images in eval mode; lowest-rank channels removed, "
             "int(C x rate) per layer",
    adapted="ranks taken once at the shared prune_epoch and all layers pruned at once (paper: ranks of a pretrained "
            "network, then layer-by-layer pruning with a fine-tuning round per layer); a uniform rate solved for the "
            "FLOPs target (--rates for hand-set per-layer rates); residual groups scored by the mean rank of their "
            "convs' own outputs and removed as one unit",
    defaults="500 training images (--rank-images; the official script uses 5 x 128), the run's recipe for training",
)


@PRUNERS.register("hrank", source=HRANK_CARD.paper)
class HRank(UniformPruner):
    Config = HRankConfig
    method = HRANK_CARD
    criterion = "hrank"

    def plan(self, ctx, net: PrunableNetwork, groups: list[CoupledGroup], model: FlopsModel, budget: float,
             tolerance: float, generator: torch.Generator) -> Plan:
        targets = {layer.name: (layer.bn if layer.bn is not None else layer.module)
                   for g in groups for layer, _ in g.members}
        batches = ctx.training_batches(self.config.rank_images, seed=ctx.config.seed)
        with torch.no_grad(), RankRecorder(targets.values()) as ranks:
            ctx.passes(batches)
        self._ranks = {}
        for g in groups:
            per_member = [ranks.mean(targets[layer.name])[idxs] for layer, idxs in g.members]
            self._ranks[g.index] = torch.stack(per_member).mean(dim=0)
        plan = super().plan(ctx, net, groups, model, budget, tolerance, generator)
        plan.extra["rank_images"] = ranks.images
        return plan

    def channel_scores(self, group: CoupledGroup, generator: torch.Generator) -> torch.Tensor:
        return self._ranks[group.index]
