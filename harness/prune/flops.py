"""The project's one FLOPs / parameter counter.

FLOPs are reported the way the pruning literature reports them (He et al. 2016, Li et al.
2017, ...): multiply-accumulates of Conv2d and Linear layers only, biases, BN, activations and
pooling not counted. ResNet-56 on CIFAR is then "125M FLOPs" and ResNet-50 "4.1G".
Counts are read off the weights actually present, so pruned models (whose channel counts
torch-pruning changed in place) are counted correctly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Cost:
    """Per-sample MACs of conv/linear layers and the total number of parameters (BN included)."""

    flops: int
    params: int


def layer_flops(
    model: nn.Module, input_size: int | tuple[int, int], in_channels: int
) -> dict[str, int]:
    """MACs of each Conv2d / Linear (by module name) for one ``in_channels`` x H x W input.

    Runs one forward pass on a zero tensor with hooks; the model's train/eval modes are
    restored afterwards, module by module.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    counts: dict[str, int] = {}

    def hook(name: str):
        def record(module: nn.Module, _inp: object, out: torch.Tensor) -> None:
            # weight[0].numel() = (in_channels/groups)*kh*kw for a conv, in_features for a linear;
            # out.numel() / batch is the number of output values each of those MACs produces.
            macs = out[0].numel() * module.weight[0].numel()
            counts[name] = counts.get(name, 0) + macs

        return record

    handles = [
        m.register_forward_hook(hook(name))
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    modes = {m: m.training for m in model.modules()}
    reference = next(model.parameters(), torch.empty(0))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, h, w, device=reference.device, dtype=reference.dtype))
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.training = training
    return counts


def count_cost(model: nn.Module, input_size: int | tuple[int, int], in_channels: int) -> Cost:
    """Total per-sample MACs (the sum of `layer_flops`) and parameter count of ``model``."""
    flops = sum(layer_flops(model, input_size, in_channels).values())
    return Cost(flops=flops, params=sum(p.numel() for p in model.parameters()))


def reduction(before: int, after: int) -> float:
    """Fraction removed, e.g. 0.52 for "52% FLOPs reduction"."""
    return 1.0 - after / before
