"""The authors' selection loop, faithfully: for every (layer, criterion) deep-copy the model,
re-trace the dependency graph, physically prune, and forward the whole subset.

Kept as the reference the fast evaluator is tested and benchmarked against; it uses the same
open layers, step sizes and criteria as the `LAASP` object it is given, so only the way a
candidate's loss is measured differs.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.prune.criteria import CRITERIA, CriterionInput, lowest
from harness.prune.prunable import PrunableNetwork
from harness.train.device import exact_fp32
from laasp.pruner import LAASP


@dataclass(frozen=True)
class ReferencePick:
    layer: str
    criterion: str
    idxs: tuple[int, ...]
    loss: float


def reference_select(pruner: LAASP, batch_size: int = 500) -> ReferencePick | None:
    x, y = pruner.evaluator.x, pruner.evaluator.y
    with exact_fp32(x.device):  # the same arithmetic as the fast path (true fp32 on CUDA)
        return _select(pruner, x, y, batch_size)


def _select(pruner: LAASP, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> ReferencePick | None:
    gen_state = pruner.generator.get_state()  # random criteria must draw what the fast path draws
    best: ReferencePick | None = None
    for layer in pruner.open_layers():
        n = pruner.step_size(layer)
        for crit in pruner.config.criteria:
            idxs = lowest(CRITERIA.get(crit)(CriterionInput(layer.module, layer.bn, pruner.generator)), n)
            candidate = copy.deepcopy(pruner.model)
            net = PrunableNetwork(candidate, pruner.net.input_size, pruner.net.in_channels)
            net.remove(net.by_name[layer.name], idxs)
            candidate.eval()
            total = 0.0
            with torch.inference_mode():
                for lo in range(0, len(x), batch_size):
                    total += float(F.cross_entropy(candidate(x[lo:lo + batch_size]).double(), y[lo:lo + batch_size],
                                                   reduction="sum"))
            loss = total / len(x)
            if best is None or loss < best.loss:
                best = ReferencePick(layer.name, crit, tuple(idxs), loss)
    pruner.generator.set_state(gen_state)
    return best
