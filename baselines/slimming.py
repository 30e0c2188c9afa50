"""``slimming``: Liu, Li, Shen, Huang, Yan, Zhang, "Learning Efficient Convolutional Networks
through Network Slimming" (ICCV 2017), as Eric-mingjie/network-slimming (``main.py updateBN``,
``vggprune.py``, ``resprune.py``) and liuzhuang13/slimming do it.

- **Sparsity training** (every epoch before ``prune_epoch``): after each backward pass, before
  the optimizer step, ``lambda x sign(gamma)`` is added to the gradient of every batch norm's
  scale (not its shift); it goes through SGD momentum, and the run's weight decay still applies,
  as in ``updateBN``. lambda is the paper's per model family: 1e-4 for VGG, 1e-5 for ResNets
  (and DenseNet); ``--reg`` sets it.
- **Pruning** at ``prune_epoch``: one global ranking of the channels by ``|gamma|``, lowest
  removed, until the FLOPs target (the code: a global threshold at a percentile). The
  fine-tuning that follows has no penalty (the code's ``--refine`` without ``--sr``).

Adapted: the threshold follows the FLOPs target instead of a channel percentile; a per-layer
cap keeps every layer alive (the official code has none: its README warns a layer may be
emptied). In the official pre-activation ResNets the residual stream is never narrowed
(``channel_selection`` only selects what a block reads); our post-activation ResNets have no
such read-side selection, so residual-coupled channels are not pruned at all and the ranking
runs over the other channels. A channel cut in two coupled batch norms (MobileNetV2's expansion
and depthwise convs) is ranked by the mean ``|gamma|`` of the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from baselines.common import (BaselineConfig, CoupledGroup, FlopsModel, OneShotPruner, Plan, is_residual_tied,
                              plan_from_ranking, ranked_events)
from harness.errors import UserError
from harness.models import MODELS
from harness.prune.prunable import PrunableNetwork
from harness.prune.pruner import PRUNERS, MethodCard

FAMILY_REG = {"cifar_vgg": 1e-4}  # README of network-slimming: --s 1e-4 for VGG ...
DEFAULT_REG = 1e-5                 # ... and 1e-5 for ResNet-164 and DenseNet-40


@dataclass(frozen=True)
class SlimmingConfig(BaselineConfig):
    reg: float | None = None  # lambda of the L1 penalty on batch-norm scales; None: the paper's for the family

    def validate(self, job=None) -> None:
        super().validate(job)
        if self.reg is not None and not self.reg > 0:
            raise UserError(f"--reg must be > 0 (got {self.reg}): it is the L1 strength on batch-norm scales "
                            "(the paper: 1e-4 for VGG, 1e-5 for ResNets)")


def bn_l1_subgradient(bns: list[nn.BatchNorm2d], strength: float) -> None:
    """``updateBN``: add ``strength x sign(gamma)`` to each scale's gradient."""
    for bn in bns:
        if bn.weight.grad is not None:
            bn.weight.grad.add_(torch.sign(bn.weight.detach()), alpha=strength)


SLIMMING_CARD = MethodCard(
    paper="Liu, Li, Shen, Huang, Yan, Zhang: Learning Efficient Convolutional Networks through Network Slimming, "
          "ICCV 2017",
    official_code="liuzhuang13/slimming (Torch, prune/prune.lua); Eric-mingjie/network-slimming @b395dc0 (main.py "
                  "updateBN, vggprune.py, resprune.py)",
    faithful="L1 subgradient lambda x sign(gamma) on every batch-norm scale after backward, through SGD momentum, "
             "weight decay kept, during all training before pruning; one global |gamma| ranking, lowest channels "
             "removed; fine-tuning without the penalty",
    adapted="the ranking stops at the FLOPs target instead of a channel percentile; per-layer cap (>= 1 channel kept; "
            "the official code can empty a layer); residual-coupled channels not pruned (the official pre-activation "
            "ResNets only select what a block reads, never narrowing the stream; ours have no read-side selection)",
    defaults="lambda 1e-4 for VGG, 1e-5 for ResNets and other families (--reg); sparsity training = the epochs "
             "before prune_epoch",
)


@PRUNERS.register("slimming", source=SLIMMING_CARD.paper)
class Slimming(OneShotPruner):
    Config = SlimmingConfig
    method = SLIMMING_CARD
    criterion = "bn_scale"

    def __init__(self, config: Any):
        super().__init__(config)
        self._bns: list[nn.BatchNorm2d] | None = None

    def strength(self, model_name: str) -> float:
        if self.config.reg is not None:
            return self.config.reg
        return FAMILY_REG.get(MODELS.meta(model_name)["family"], DEFAULT_REG)

    def after_backward(self, ctx) -> None:
        if ctx.stage != "train":  # sparsity training only; fine-tuning has no penalty
            return
        if self._bns is None:
            self._bns = [m for m in ctx.model.modules() if isinstance(m, nn.BatchNorm2d) and m.weight is not None]
            self._strength = self.strength(ctx.config.model)
        bn_l1_subgradient(self._bns, self._strength)

    def groups(self, net: PrunableNetwork) -> list[CoupledGroup]:
        groups = [g for g in super().groups(net) if not is_residual_tied(g)]
        for i, g in enumerate(groups):
            g.index = i
        return groups

    def plan(self, ctx, net: PrunableNetwork, groups: list[CoupledGroup], model: FlopsModel, budget: float,
             tolerance: float, generator: torch.Generator) -> Plan:
        scores = {}
        for g in groups:
            gammas = [layer.bn.weight.detach().abs().double().cpu()[idxs] for layer, idxs in g.members
                      if layer.bn is not None and layer.bn.weight is not None]
            if not gammas:
                raise UserError(f"slimming needs a batch norm after every prunable conv; {g.root.name} has none")
            scores[g.index] = torch.stack(gammas).mean(dim=0)
        return plan_from_ranking(ranked_events(groups, scores), model, budget, tolerance, self.criterion,
                                 reg=self.strength(ctx.config.model))
