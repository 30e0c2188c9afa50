"""A during-training pruner plugin: ``python run_bench.py run --plugin examples/soft_pruner.py --pruner soft_l1 ...``

Soft pruning in the style of SFP (He et al. 2018), kept short: at the prune point and after
every later epoch, the lowest-L1 filters of each block-internal conv are set to zero but keep
training (they may grow back); after the last epoch they are removed for good. It shows the
lifecycle hooks a pruner can override (`harness.api.Pruner`): ``prune`` (the prune point),
``on_epoch_end`` (after each training epoch, before its evaluation), ``on_train_end`` (after the
last epoch) and ``state_dict``/``load_state_dict`` (saved with the run, so an interrupted run
resumes exactly). ``after_backward`` (between backward and the optimizer step: regularizers,
gradient masks) and ``ctx.training_batches``/``ctx.passes`` (data for activation- or
gradient-based scores) work the same way; `baselines/` has pruners using all of them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from harness.api import CRITERIA, PRUNERS, CriterionInput, PrunableNetwork, Pruner, PruneSchedule, count_cost, lowest


@dataclass(frozen=True)
class SoftL1Config(PruneSchedule):
    """target_flops, prune_epoch, max_prune_rate and their checks come from PruneSchedule."""


def internal_layers(net: PrunableNetwork) -> list:
    """Convs whose filters can go without touching another conv's outputs (no residual tie)."""
    def convs_cut(layer) -> int:
        return sum(isinstance(m, nn.Conv2d) for m, _ in net.removal(layer, [0]).masks)
    return [layer for layer in net.layers if convs_cut(layer) == 1]


@PRUNERS.register("soft_l1", source="example plugin: SFP-style soft L1 masks on block-internal convs")
class SoftL1(Pruner):
    Config = SoftL1Config

    def __init__(self, config):
        super().__init__(config)
        self.counts: dict[str, int] | None = None   # filters masked per layer, fixed at the prune point
        self.filters: dict[str, int] = {}           # each layer's filters before pruning
        self.masked: dict[str, list[int]] = {}      # the current mask
        self.updates = 0

    def _net(self, ctx) -> tuple[PrunableNetwork, list]:
        net = PrunableNetwork(ctx.model, ctx.data.image_size, ctx.data.in_channels)
        return net, internal_layers(net)

    def prune(self, ctx) -> dict:
        """How many filters each layer loses: one fraction, grown until removing that many from
        a copy of the network would meet the FLOPs target (or the per-layer cap)."""
        cfg = self.config
        _, layers = self._net(ctx)
        self.filters = {layer.name: layer.filters for layer in layers}
        fraction = 0.0
        while fraction < cfg.max_prune_rate:
            fraction = min(fraction + 0.02, cfg.max_prune_rate)
            self.counts = {layer.name: min(int(fraction * layer.filters), layer.filters - 1) for layer in layers}
            trial = copy.deepcopy(ctx.model)
            trial_net = PrunableNetwork(trial, ctx.data.image_size, ctx.data.in_channels)
            for layer in internal_layers(trial_net):
                if self.counts[layer.name]:
                    trial_net.remove(layer, list(range(self.counts[layer.name])))
            flops = count_cost(trial, ctx.data.image_size, ctx.data.in_channels).flops
            if 1 - flops / ctx.baseline_cost.flops >= cfg.target_flops:
                break
        self.on_epoch_end(ctx)  # the first mask, right away
        return self._fields(ctx, None)

    @torch.no_grad()
    def on_epoch_end(self, ctx) -> None:
        if self.counts is None:  # before the prune point: nothing to do
            return
        _, layers = self._net(ctx)
        generator = torch.Generator().manual_seed(0)
        for layer in layers:
            scores = CRITERIA.get("l1")(CriterionInput(layer.module, layer.bn, generator))
            self.masked[layer.name] = lowest(scores, self.counts[layer.name])
            layer.module.weight[self.masked[layer.name]] = 0  # soft: the filter stays and keeps training
        self.updates += 1

    def on_train_end(self, ctx) -> dict | None:
        if self.counts is None:
            return None
        net, layers = self._net(ctx)
        for layer in layers:  # one conv per removal: the other layers' filter indices do not move
            if self.masked[layer.name]:
                net.remove(layer, self.masked[layer.name])
        reduction = 1 - count_cost(ctx.model, ctx.data.image_size, ctx.data.in_channels).flops / ctx.baseline_cost.flops
        return self._fields(ctx, reduction >= self.config.target_flops, reduction)

    def _fields(self, ctx, reached: bool | None, reduction: float | None = None) -> dict:
        removed = sum(self.counts.values())
        return {"target_flops": self.config.target_flops, "target_reached": reached,
                "trace": [{"step": self.updates, "layer": "*", "criterion": "l1", "removed": removed, "loss": None,
                           "runner_up_loss": None, "flops_reduction": reduction}],
                "removed_per_criterion": {"l1": removed}, "mask_updates": self.updates,
                "layer_rates": {name: n / self.filters[name] for name, n in self.counts.items()}}

    def state_dict(self) -> dict | None:
        if self.counts is None:
            return None
        return {"counts": self.counts, "filters": self.filters, "masked": self.masked, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.counts, self.filters, self.masked = dict(state["counts"]), dict(state["filters"]), dict(state["masked"])
        self.updates = state["updates"]
