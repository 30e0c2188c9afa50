"""Filter-ranking criteria, shared by LAASP and the baselines: one score per filter, lowest removed.

The authors' pool (LAASP.md): ``l1``, ``l2``, ``eucl`` (FPGM-like) and ``cos``, all computed
from the layer's own weights, one row per filter. More criteria register with
``@CRITERIA.register(name)``; a criterion is a function of a `CriterionInput`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.errors import UserError
from harness.registry import Registry


@dataclass(frozen=True)
class CriterionInput:
    layer: nn.Conv2d
    bn: nn.BatchNorm2d | None  # the batch norm right after the layer, when there is one
    generator: torch.Generator  # for criteria that draw random numbers
    probe: Any = None  # a `harness.prune.probe.Probe` for data-driven criteria (meta needs_data=True)


Criterion = "Callable[[CriterionInput], torch.Tensor]"
CRITERIA: Registry = Registry("criterion")


def filter_rows(layer: nn.Module) -> torch.Tensor:
    """The layer's weights as one float64 row per output filter (float64: stable rankings)."""
    w = layer.weight.detach()
    return w.reshape(w.shape[0], -1).double()


@CRITERIA.register("l1", source="LAASP.md: sum of absolute weights of the filter")
def l1(inp: CriterionInput) -> torch.Tensor:
    return filter_rows(inp.layer).abs().sum(dim=1)


@CRITERIA.register("l2", source="LAASP.md: Euclidean norm of the filter")
def l2(inp: CriterionInput) -> torch.Tensor:
    return filter_rows(inp.layer).norm(dim=1)


@CRITERIA.register("eucl", source="LAASP.md: sum of Euclidean distances to all filters (geometric median)")
def eucl(inp: CriterionInput) -> torch.Tensor:
    return euclidean_distance_sum(filter_rows(inp.layer))


@CRITERIA.register("cos", source="LAASP.md: sum of cosine distances 1 - cos(W_i, W_j) to all filters")
def cos(inp: CriterionInput) -> torch.Tensor:
    rows = filter_rows(inp.layer)
    unit = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (1.0 - unit @ unit.T).sum(dim=1)


@CRITERIA.register("bn_scale", source="Network Slimming (Liu et al. 2017): |gamma| of the following batch norm")
def bn_scale(inp: CriterionInput) -> torch.Tensor:
    if inp.bn is None or inp.bn.weight is None:
        return l1(inp)  # no affine BN after this layer: fall back to the weight magnitude
    return inp.bn.weight.detach().abs().double()


@CRITERIA.register("random", source="random ranking (sanity baseline)")
def random_scores(inp: CriterionInput) -> torch.Tensor:
    return torch.rand(inp.layer.out_channels, generator=inp.generator, dtype=torch.float64)


# Data-driven criteria: the caller passes a `Probe` over a fixed set of training images (LAASP
# builds one per step from its loss subset when its pool holds one of these).
_EXTENSION = " (LAASP pool: an extension, no published LAASP uses data-driven criteria)"


@CRITERIA.register("taylor", needs_data=True, source="Molchanov et al. 2019: (gamma dL/dgamma + beta dL/dbeta)^2 on "
                                                     "the batch norm, averaged over minibatches" + _EXTENSION)
def taylor(inp: CriterionInput) -> torch.Tensor:
    return _probe(inp, "taylor").taylor(inp.layer, inp.bn)


@CRITERIA.register("hrank", needs_data=True, source="Lin et al. 2020 (HRank): average rank of the channel's feature "
                                                    "maps after batch norm and ReLU" + _EXTENSION)
def hrank(inp: CriterionInput) -> torch.Tensor:
    return _probe(inp, "hrank").rank(inp.layer, inp.bn)


def needs_data(name: str) -> bool:
    return bool(CRITERIA.meta(name).get("needs_data"))


def _probe(inp: CriterionInput, name: str):
    if inp.probe is None:
        raise UserError(f"criterion {name!r} scores filters from data; this pruner gives it none (LAASP does)")
    if name == "taylor" and (inp.bn is None or inp.bn.weight is None):
        raise UserError("criterion 'taylor' needs an affine batch norm after every prunable conv")
    return inp.probe


def euclidean_distance_sum(rows: torch.Tensor) -> torch.Tensor:
    """Sum over j of ||row_i - row_j||_2 on the raw weights (FPGM's geometric-median proxy)."""
    return torch.cdist(rows, rows, p=2).sum(dim=1)


def lowest(scores: torch.Tensor, n: int) -> list[int]:
    """Indices of the ``n`` lowest scores; ties resolved by filter index (stable sort)."""
    order = torch.argsort(scores, stable=True)
    return sorted(int(i) for i in order[:n])
