"""The FLOPs counter reproduces the numbers the pruning literature reports."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from harness.prune.flops import Cost, count_cost, layer_flops, reduction
from harness.models import build_model

# (model, input side, classes, published MACs, published params, source)
PUBLISHED = [
    ("resnet56", 32, 10, 125.5e6, 0.85e6, "He et al. 2016; HRank/ThiNet tables: 125.49M"),
    # He et al. print "1.7M" params for ResNet-110; the exact count is 1.73M (option A:
    # 1,727,962), 1.6% off that rounding, so we pin the 1.72M pruning papers report.
    ("resnet110", 32, 10, 252.9e6, 1.72e6, "He et al. 2016; HRank: 252.89M, 1.72M"),
    ("resnet50", 224, 1000, 4.1e9, 25.6e6, "He et al. 2016; torchvision: 4.09 GMACs, 25.56M"),
    ("mobilenet_v2", 224, 1000, 0.30e9, 3.5e6, "Sandler et al. 2018; torchvision: 3.50M"),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 170 s instead of 12 s under load without it


@pytest.mark.parametrize(
    ("name", "size", "classes", "flops", "params", "source"),
    PUBLISHED,
    ids=[row[0] for row in PUBLISHED],
)
def test_matches_published_counts(
    name: str, size: int, classes: int, flops: float, params: float, source: str
) -> None:
    cost = count_cost(build_model(name, classes, 3), size, 3)
    assert cost.flops == pytest.approx(flops, rel=0.01), source
    assert cost.params == pytest.approx(params, rel=0.01), source


def test_projection_shortcut_cost_is_the_only_difference_from_option_a() -> None:
    """Our ResNet-56 = He et al.'s option-A ResNet-56 + two 1x1 stride-2 shortcut convs."""
    per_layer = layer_flops(build_model("resnet56", 10, 3), 32, 3)
    shortcut = {k: v for k, v in per_layer.items() if "downsample" in k}
    assert shortcut == {"layer2.0.downsample.0": 16 * 32 * 16 * 16,
                        "layer3.0.downsample.0": 32 * 64 * 8 * 8}
    assert sum(per_layer.values()) - sum(shortcut.values()) == 125_485_696  # "125.49M"


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)  # bias: params only, no MACs
        self.bn = nn.BatchNorm2d(4)  # params only
        self.grouped = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2)
        self.fc = nn.Linear(36, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.grouped(torch.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(x, 1))


def test_tiny_model_by_hand() -> None:
    # conv: 4x5x5 outputs * 2*3*3 = 1800; grouped: 4x3x3 outputs * (4/2)*3*3 = 648; fc: 36*3.
    assert layer_flops(Tiny(), 5, 2) == {"conv": 1800, "grouped": 648, "fc": 108}
    params = (4 * 2 * 9 + 4) + 2 * 4 + (4 * 2 * 9 + 4) + (36 * 3 + 3)
    assert count_cost(Tiny(), 5, 2) == Cost(flops=1800 + 648 + 108, params=params)
    # rectangular 5x6 input: conv 4x5x6 outputs * 18 = 2160; grouped still 3x3 spatially.
    assert count_cost(Tiny(), (5, 6), 2).flops == 2160 + 648 + 108


def test_counts_pruned_model() -> None:
    """Remove 2 of 16 channels inside one ResNet block: its two convs each lose 2/16."""
    model = build_model("resnet20", 10, 3)
    before = count_cost(model, 32, 3)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32))
    dg.get_pruning_group(model.layer1[0].conv1, tp.prune_conv_out_channels, idxs=[0, 1]).prune()
    after = count_cost(model, 32, 3)
    conv_macs = 2 * 16 * 9 * 32 * 32  # 2 filters of 16x3x3 over 32x32 (and 2 input slices)
    assert before.flops - after.flops == 2 * conv_macs
    assert before.params - after.params == 2 * (2 * 16 * 9) + 2 * 2  # two convs + 2 BN channels


def test_restores_modes_and_follows_dtype() -> None:
    model = Tiny().double().train()
    model.bn.eval()
    count_cost(model, 5, 2)
    assert model.training and model.conv.training and not model.bn.training
    assert all(not m._forward_hooks for m in model.modules())


def test_reduction() -> None:
    assert reduction(100, 48) == pytest.approx(0.52)
    assert reduction(125_485_696, 125_485_696) == 0.0
