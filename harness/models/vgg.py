"""VGG-16 with batch norm, CIFAR variant."""
from __future__ import annotations

import torch
from torch import nn

from harness.models.registry import MODELS, _init_weights


_VGG16_CFG: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
]


class CifarVGG(nn.Module):
    """VGG conv stack + BN, then one Linear 512 -> classes (the CIFAR form used by Li et al.).

    The global average pool is a no-op at 32x32 (the map is already 1x1) and lets larger
    inputs through without changing the classifier's width.
    """

    def __init__(self, cfg: list[int | str], num_classes: int, in_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.BatchNorm2d(int(v)),
                           nn.ReLU(inplace=True)]
                channels = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@MODELS.register("vgg16", family="cifar_vgg", input_size=32, min_input_size=32)
def vgg16(num_classes: int, in_channels: int) -> nn.Module:
    return CifarVGG(_VGG16_CFG, num_classes, in_channels)
