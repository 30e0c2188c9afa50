"""The model zoo: CIFAR ResNets, CIFAR VGG-16-BN and torchvision ImageNet models.

Every model is a builder ``build(num_classes, in_channels) -> nn.Module`` registered in
`MODELS` with its metadata, so the rest of the harness never branches on a model name:

- ``family``: "cifar_resnet", "cifar_vgg" or "imagenet";
- ``input_size``: the canonical square input side (32 for CIFAR models, 224 for ImageNet);
- ``min_input_size``: the smallest square side at which every stride-2 layer still receives
  at least 2x2 pixels. For VGG-16 that is a hard limit (a 2x2 max-pool of a 1x1 map is empty,
  so five pools need 32); padded stride-2 convs map 1x1 to 1x1, so below the limit ResNets and
  MobileNetV2 still run, but their deepest stages only ever see one padded pixel. Each
  strided stage takes ceil(side/2), so k of them need side > 2**(k-1): 3 for the CIFAR
  ResNets (2 strided stages), 17 for the torchvision models (5). MNIST's 28 fits all but VGG.

All architectures are built so that torch-pruning's dependency graph can prune them: the
CIFAR ResNets use projection shortcuts (1x1 conv + BN, "option B") instead of the parameter-
free zero-padding shortcut of He et al., which the dependency graph cannot follow.
"""
from __future__ import annotations

from typing import Callable

import torch
import torchvision
from torch import nn

from harness.errors import UserError
from harness.registry import Registry

Builder = Callable[[int, int], nn.Module]
MODELS: Registry[Builder] = Registry("model")


def build_model(name: str, num_classes: int, in_channels: int) -> nn.Module:
    """Build a freshly initialised model; unknown names raise `UserError` listing the known ones."""
    return MODELS.get(name)(num_classes, in_channels)


def check_input_size(name: str, size: int) -> None:
    """Fail before training when a dataset's images are too small for the chosen model."""
    need = MODELS.meta(name)["min_input_size"]
    if size >= need:
        return
    fits = [n for n in MODELS.names() if MODELS.meta(n)["min_input_size"] <= size]
    alternative = f"one of {', '.join(fits)}" if fits else "another model"
    raise UserError(
        f"images of {size}x{size} are too small for {name} (needs at least {need}x{need}); "
        f"use a dataset with larger images or {alternative}"
    )


def classifier_modules(model: nn.Module) -> list[nn.Module]:
    """The output layer(s) a pruner must never prune (their outputs are the class logits).

    This is the last `nn.Linear` in module order, which covers every model here (``fc`` of the
    ResNets, ``classifier`` of VGG, ``classifier.1`` of MobileNetV2). Pass the result to
    torch-pruning as ``ignored_layers``.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1:]


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (He et al. 2015), unit-gain BN; what the CIFAR papers train from."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --- CIFAR ResNets (He et al. 2016, section 4.2) ------------------------------------------


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


_CIFAR_RESNET = dict(family="cifar_resnet", input_size=32, min_input_size=3)


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


# --- VGG-16 with batch norm, CIFAR variant ------------------------------------------------

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


# --- torchvision ImageNet models ----------------------------------------------------------


def _torchvision(arch: str, num_classes: int, in_channels: int) -> nn.Module:
    """A randomly initialised torchvision model, its stem conv rebuilt for ``in_channels``."""
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if in_channels != 3:
        _replace_first_conv(model, in_channels)
    return model


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the stem conv for an identical one reading ``in_channels`` channels (e.g. grayscale)."""
    name, old = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    old.dilation, old.groups, old.bias is not None, old.padding_mode)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, new)


_IMAGENET = dict(family="imagenet", input_size=224, min_input_size=17)


@MODELS.register("resnet18", **_IMAGENET)
def resnet18(num_classes: int, in_channels: int) -> nn.Module:
    return _torchvision("resnet18", num_classes, in_channels)


@MODELS.register("resnet34", **_IMAGENET)
def resnet34(num_classes: int, in_channels: int) -> nn.Module:
    return _torchvision("resnet34", num_classes, in_channels)


@MODELS.register("resnet50", **_IMAGENET)
def resnet50(num_classes: int, in_channels: int) -> nn.Module:
    return _torchvision("resnet50", num_classes, in_channels)


@MODELS.register("mobilenet_v2", **_IMAGENET)
def mobilenet_v2(num_classes: int, in_channels: int) -> nn.Module:
    return _torchvision("mobilenet_v2", num_classes, in_channels)
