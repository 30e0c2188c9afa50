"""VGG-16 with batch norm for CIFAR: the LAASP authors' network (``vgg16``) and the
single-linear variant of Li et al. (``vgg16_1fc``), which this harness called ``vgg16`` first.

``vgg16`` is the CIFAR VGG-16 of the LAASP authors' ``models/vgg_cifar.py`` (the network of
the network-slimming code that the HRank and FPGM CIFAR tables also use): 13 bias-free 3x3
convolutions with BN and ReLU, max-pools after the 2nd, 4th, 7th and 10th only (four), a 2x2
average pool of the 2x2 map, then Linear 512-512, BatchNorm1d, ReLU and the 512-class
classifier. Its cost at 32x32 is the literature's 313.7M MACs and 14.98M parameters (tested).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from harness.models.registry import MODELS, _init_weights

_VGG16_CONVS: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
]
BN_SCALE_INIT = 0.5  # the authors' BatchNorm2d weight init (vgg_cifar.py): halves every conv output at start


def _features(cfg: list[int | str], in_channels: int, conv_bias: bool) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    channels = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(v), 3, padding=1, bias=conv_bias), nn.BatchNorm2d(int(v)),
                       nn.ReLU(inplace=True)]
            channels = int(v)
    return nn.Sequential(*layers), channels


def init_like_the_authors(model: nn.Module) -> None:
    """Conv N(0, 2/(k*k*out)), BatchNorm2d weight 0.5 and bias 0, Linear N(0, 0.01) and bias 0;
    BatchNorm1d keeps PyTorch's default (1, 0), as their init loop skips it."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, BN_SCALE_INIT)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class AuthorsCifarVGG(nn.Module):
    """The LAASP authors' CIFAR VGG: four max-pools, a 2x2 average pool, two linear layers.

    The pool is adaptive: at 32x32 its input is 2x2, so it is exactly the authors' 2x2 average
    pool (tested), and a larger input still reaches the 512-wide linear layer.
    """

    def __init__(self, cfg: list[int | str], num_classes: int, in_channels: int, hidden: int = 512):
        super().__init__()
        self.features, channels = _features(cfg, in_channels, conv_bias=False)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, num_classes))
        init_like_the_authors(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class CifarVGG(nn.Module):
    """VGG conv stack (with conv biases) + BN, five max-pools, one Linear 512 -> classes (Li et al.'s form).

    The global average pool is a no-op at 32x32 (the map is already 1x1) and lets larger
    inputs through without changing the classifier's width.
    """

    def __init__(self, cfg: list[int | str], num_classes: int, in_channels: int):
        super().__init__()
        self.features, channels = _features(cfg, in_channels, conv_bias=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# Four 2x2 max-pools need 16 pixels for the last one to see 2x2 (32 gives the authors' 2x2 map).
@MODELS.register("vgg16", family="cifar_vgg", input_size=32, min_input_size=16, init=init_like_the_authors)
def vgg16(num_classes: int, in_channels: int) -> nn.Module:
    return AuthorsCifarVGG(_VGG16_CONVS, num_classes, in_channels)


@MODELS.register("vgg16_1fc", family="cifar_vgg", input_size=32, min_input_size=32, init=_init_weights)
def vgg16_1fc(num_classes: int, in_channels: int) -> nn.Module:
    return CifarVGG(_VGG16_CONVS + ["M"], num_classes, in_channels)
