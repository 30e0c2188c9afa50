"""CIFAR ResNets (He et al. 2016, section 4.2) with projection shortcuts."""
from __future__ import annotations

import torch
from torch import nn

from harness.models.registry import MODELS, _init_weights


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; a 1x1 projection where the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: three stages of n blocks with 16/32/64 channels."""

    def __init__(self, n: int, num_classes: int, in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._stage(16, 16, n, stride=1)
        self.layer2 = self._stage(16, 32, n, stride=2)
        self.layer3 = self._stage(32, 64, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_CIFAR_RESNET = dict(family="cifar_resnet", input_size=32, min_input_size=3, init=_init_weights)


@MODELS.register("resnet20", **_CIFAR_RESNET)
def resnet20(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(3, num_classes, in_channels)


@MODELS.register("resnet32", **_CIFAR_RESNET)
def resnet32(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(5, num_classes, in_channels)


@MODELS.register("resnet56", **_CIFAR_RESNET)
def resnet56(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(9, num_classes, in_channels)


@MODELS.register("resnet110", **_CIFAR_RESNET)
def resnet110(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(18, num_classes, in_channels)
