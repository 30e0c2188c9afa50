"""The criteria pool, checked against hand-computed scores on a tiny layer (LAASP.md definitions)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harness.prune.criteria import CRITERIA, CriterionInput, lowest


def _layer() -> nn.Conv2d:
    """Three 1x1 filters over two input channels: rows (3, 4), (1, 0), (-2, 2)."""
    conv = nn.Conv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[3.0, 4.0], [1.0, 0.0], [-2.0, 2.0]]).reshape(3, 2, 1, 1))
    return conv


def _scores(name: str, bn=None) -> list[float]:
    return CRITERIA.get(name)(CriterionInput(_layer(), bn, torch.Generator().manual_seed(0))).tolist()


def test_l1_and_l2_by_hand() -> None:
    assert _scores("l1") == pytest.approx([7.0, 1.0, 4.0])
    assert _scores("l2") == pytest.approx([5.0, 1.0, math.sqrt(8)])


def test_eucl_is_sum_of_distances_on_raw_weights() -> None:
    d01 = math.dist((3, 4), (1, 0))    # sqrt(20)
    d02 = math.dist((3, 4), (-2, 2))   # sqrt(29)
    d12 = math.dist((1, 0), (-2, 2))   # sqrt(13)
    assert _scores("eucl") == pytest.approx([d01 + d02, d01 + d12, d02 + d12])


def test_cos_is_sum_of_cosine_distances() -> None:
    rows = [(3, 4), (1, 0), (-2, 2)]

    def cosd(a, b):
        return 1 - (a[0] * b[0] + a[1] * b[1]) / (math.hypot(*a) * math.hypot(*b))

    expected = [sum(cosd(rows[i], rows[j]) for j in range(3)) for i in range(3)]
    assert _scores("cos") == pytest.approx(expected)


def test_lowest_picks_smallest_scores_stably() -> None:
    assert lowest(torch.tensor([7.0, 1.0, 4.0]), 2) == [1, 2]
    assert lowest(torch.tensor([1.0, 1.0, 1.0]), 2) == [0, 1]  # ties: lowest index first


def test_bn_scale_and_random() -> None:
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -2.0, 1.0]))
    assert _scores("bn_scale", bn) == pytest.approx([0.5, 2.0, 1.0])
    assert _scores("random") == _scores("random")  # seeded


def test_pool_registry_lists_authors_criteria() -> None:
    assert {"l1", "l2", "eucl", "cos"} <= set(CRITERIA.names())
