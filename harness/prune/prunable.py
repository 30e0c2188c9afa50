"""The network as pruners see it: prunable conv layers, their coupled groups, and removal masks.

The dependency graph is traced once per run (torch-pruning keeps it valid across successive
``group.prune()`` calls, as its own iterative pruners rely on). For every candidate
(layer, filters) the graph gives the coupled group; a candidate is evaluated without touching
the weights by zeroing, in the forward pass, the output channels of every layer in the group
whose *output* channels the removal would delete (conv, batch norm, depthwise conv). A zero
channel contributes nothing downstream, so this equals physical removal up to float rounding
(tests pin it to 1e-4 relative against a pruned deep copy).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch_pruning as tp
from torch import nn

from harness.prune.flops import layer_flops
from harness.models import classifier_modules


@dataclass
class Layer:
    """One prunable conv layer (a LAASP candidate position)."""

    name: str
    module: nn.Conv2d
    bn: nn.BatchNorm2d | None
    original_filters: int

    @property
    def filters(self) -> int:
        return self.module.out_channels

    @property
    def removed(self) -> int:
        return self.original_filters - self.filters


@dataclass(frozen=True)
class Removal:
    """What removing ``idxs`` from ``layer`` does: the channels to zero per coupled module."""

    layer: str
    idxs: tuple[int, ...]
    masks: tuple[tuple[nn.Module, tuple[int, ...]], ...]

    def key(self, names: dict[nn.Module, str]) -> tuple:
        """Identical keys = identical networks after removal (two criteria, or two coupled layers)."""
        return tuple(sorted((names[m], idx) for m, idx in self.masks))


class PrunableNetwork:
    def __init__(self, model: nn.Module, input_size: int, in_channels: int):
        self.model = model
        self.input_size = input_size
        self.in_channels = in_channels
        device = next(model.parameters()).device
        example = torch.zeros(1, in_channels, input_size, input_size, device=device)
        with torch.enable_grad(), kept_modes(model):
            self.dg = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
        self.names = {m: n for n, m in model.named_modules()}
        ignored = set(classifier_modules(model))
        order = [m for m in model.modules()]
        self.layers: list[Layer] = []
        for module in order:
            if isinstance(module, nn.Conv2d) and module not in ignored and module in self.dg.module2node:
                self.layers.append(Layer(self.names[module], module, self._bn_after(module), module.out_channels))
        self.by_name = {layer.name: layer for layer in self.layers}

    def _bn_after(self, conv: nn.Conv2d) -> nn.BatchNorm2d | None:
        node = self.dg.module2node[conv]
        for out in node.outputs:
            if isinstance(out.module, nn.BatchNorm2d):
                return out.module
        return None

    def group(self, layer: Layer, idxs: list[int]):
        return self.dg.get_pruning_group(layer.module, tp.prune_conv_out_channels, idxs)

    def removal(self, layer: Layer, idxs: list[int]) -> Removal:
        masks: dict[nn.Module, tuple[int, ...]] = {}
        for dep, dep_idxs in self.group(layer, idxs):
            module = dep.target.module
            if module in self.names and self.dg.is_out_channel_pruning_fn(dep.handler):
                masks[module] = tuple(sorted(int(i) for i in dep_idxs))
        return Removal(layer.name, tuple(idxs), tuple(masks.items()))

    def remove(self, layer: Layer, idxs: list[int]) -> None:
        """Physically remove the filters (and everything coupled to them) from the model."""
        group = self.group(layer, idxs)
        if not self.dg.check_pruning_group(group):
            raise RuntimeError(f"torch-pruning refused to remove {len(idxs)} filters from {layer.name}")
        group.prune()

    def flops_per_filter(self) -> dict[str, float]:
        """MACs removed with one filter of each layer (its coupled group included), from the
        per-layer counts of the project's one FLOPs counter. Removing channels changes a
        conv's MACs linearly, so one filter's share is exact."""
        macs = layer_flops(self.model, self.input_size, self.in_channels)
        result: dict[str, float] = {}
        for layer in self.layers:
            drop = 0.0
            seen: set[nn.Module] = set()
            for dep, _ in self.group(layer, [0]):
                m = dep.target.module
                if m in seen or not isinstance(m, (nn.Conv2d, nn.Linear)) or m not in self.names:
                    continue
                seen.add(m)
                drop += macs[self.names[m]] / _channels_cut(m, self.dg.is_out_channel_pruning_fn(dep.handler))
            result[layer.name] = drop
        return result


@contextlib.contextmanager
def kept_modes(model: nn.Module) -> Iterator[None]:
    """Every module's train/eval mode restored afterwards: torch-pruning's tracing switches the
    model to eval mode and leaves it there, which must not leak into a training epoch (a pruner
    may trace the network between two training steps)."""
    modes = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def _channels_cut(m: nn.Module, out: bool) -> int:
    """How many channels share the module's MACs along the pruned dimension."""
    if isinstance(m, nn.Linear):
        return m.out_features if out else m.in_features
    if m.groups > 1 and m.groups == m.in_channels == m.out_channels:  # depthwise: in and out go together
        return m.out_channels
    return m.out_channels if out else m.in_channels
