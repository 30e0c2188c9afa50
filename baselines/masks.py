"""Channel masks on coupled groups: zero a channel everywhere it lives, keep it zero, remove it.

A *channel* is root channel k of a `baselines.common.CoupledGroup`: filter ``idxs[k]`` of every
member conv (and, with ``batch_norm``, of the batch norm after it). Soft pruners (SFP, FPGM)
zero the conv filters only, as their code does; gate-style pruners (Taylor) zero the batch
norm's scale and shift too, which makes the channel's output exactly zero, so removing it
afterwards changes nothing the network computes.
"""
from __future__ import annotations

import torch

from baselines.common import CoupledGroup
from harness.prune.prunable import PrunableNetwork


def _filters(group: CoupledGroup, channels: list[int]):
    for layer, idxs in group.members:
        filters = [idxs[k] for k in channels]
        if filters:
            yield layer, filters


@torch.no_grad()
def zero_channels(groups: list[CoupledGroup], pruned: list[list[int]], batch_norm: bool = False) -> None:
    """Zero root channels ``pruned[g]`` of each group in every member conv (weights and bias);
    with ``batch_norm`` also the affine weight and shift of the batch norm after each member,
    which makes the channel output exactly zero (the network that `remove_channels` gives)."""
    for g in groups:
        for layer, filters in _filters(g, pruned[g.index]):
            layer.module.weight[filters] = 0
            if layer.module.bias is not None:
                layer.module.bias[filters] = 0
            if batch_norm and layer.bn is not None and layer.bn.weight is not None:
                layer.bn.weight[filters] = 0
                layer.bn.bias[filters] = 0


def remove_channels(net: PrunableNetwork, groups: list[CoupledGroup], pruned: list[list[int]]) -> None:
    """Remove the root channels ``pruned[g]`` of each group (and all that is coupled to them).
    Groups share no output channels, so one group's removal leaves the others' indices valid."""
    for g in groups:
        if pruned[g.index]:
            net.remove(g.root, sorted(pruned[g.index]))


def channel_params(groups: list[CoupledGroup], pruned: list[list[int]],
                   batch_norm: bool) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """(parameter, 0/1 multiplier of its first dimension) for every parameter of the channels
    ``pruned[g]``: conv weights and biases, and with ``batch_norm`` the batch norm's affine."""
    result = []
    for g in groups:
        for layer, filters in _filters(g, pruned[g.index]):
            params = [layer.module.weight, layer.module.bias]
            if batch_norm and layer.bn is not None:
                params += [layer.bn.weight, layer.bn.bias]
            for p in params:
                if p is not None:
                    keep = torch.ones(p.shape[0], device=p.device, dtype=p.dtype)
                    keep[filters] = 0
                    result.append((p, keep.view(-1, *([1] * (p.dim() - 1)))))
    return result
