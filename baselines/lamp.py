"""``lamp``: Lee, Park, Mo, Ahn, Shin, "Layer-adaptive Sparsity for the Magnitude-based Pruning"
(ICLR 2021), in torch-pruning's structured form.

The paper scores single weights: ``w_u^2 / sum_{v >= u} w_v^2`` within a layer (a weight's
squared magnitude over that of itself and every larger weight of its layer), ranked globally.
torch-pruning's ``LAMPImportance(p=2)`` applies that to channels: a channel's score is its
coupled group's mean squared L2 norm, divided by the sum over the channels of the group that
are at least as large; one global ranking (``global_pruning=True``). The channel form is
torch-pruning's adaptation, not the paper's; it matters only with global ranking (within a
group it orders like the magnitude). Pruned progressively to the FLOPs target as the library's
benchmark does (`baselines.tp_library`), at ``prune_epoch``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch_pruning as tp

from baselines.tp_library import build_pruner, prune_with_library
from harness.errors import UserError
from harness.prune.pruner import PRUNERS, MethodCard, Pruner, PruneSchedule


@dataclass(frozen=True)
class LibraryConfig(PruneSchedule):
    iterative_steps: int = 400  # reproduce/main.py's --iterative-steps

    def validate(self, job=None) -> None:
        super().validate(job)
        if self.iterative_steps < 1:
            raise UserError(f"--iterative-steps must be >= 1 (got {self.iterative_steps})")


LAMP_CARD = MethodCard(
    paper="Lee, Park, Mo, Ahn, Shin: Layer-adaptive Sparsity for the Magnitude-based Pruning, ICLR 2021",
    official_code="jaeho-lee/layer-adaptive-sparsity @f9fa4f3 (tools/pruners.py _normalize_scores, per weight); the "
                  "channel form is torch-pruning 1.6.1's "
                  "LAMPImportance (@e80127d), used as is",
    faithful="LAMP's score s_u / sum_{v >= u} s_v with s the squared L2 magnitude, one global ranking across layers, "
             "through torch-pruning's LAMPImportance(p=2) and pruner (400 iterative steps, re-scored each step)",
    adapted="structured: channels of coupled groups instead of single weights (torch-pruning's adaptation); stops at "
            "the FLOPs target by the harness's counter, the last step applied in part",
    defaults="p 2, global ranking, 400 iterative steps, per-layer cap as max_pruning_ratio",
)


@PRUNERS.register("lamp", source=LAMP_CARD.paper)
class LAMP(Pruner):
    Config = LibraryConfig
    method = LAMP_CARD
    criterion = "lamp"

    def prune(self, ctx) -> dict[str, Any]:
        pruner = build_pruner(tp.pruner.MetaPruner, ctx, tp.importance.LAMPImportance(p=2), global_pruning=True,
                              iterative_steps=self.config.iterative_steps, max_prune_rate=self.config.max_prune_rate)
        return prune_with_library(pruner, ctx, self.config, self.criterion)
