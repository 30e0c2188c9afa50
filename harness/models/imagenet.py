"""torchvision ImageNet models (ResNet-18/34/50, MobileNetV2), randomly initialised."""
from __future__ import annotations

import torchvision
from torch import nn

from harness.models.registry import MODELS, _init_weights


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


def _mobilenet_init(model: nn.Module) -> None:
    """torchvision's MobileNetV2 init: its conv and BN loop is `_init_weights` (Kaiming fan-out with
    the default leaky_relu slope 0 is the ReLU gain), plus Linear N(0, 0.01) and zero bias."""
    _init_weights(model)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


_IMAGENET = dict(family="imagenet", input_size=224, min_input_size=17)
_RESNET = dict(_IMAGENET, init=_init_weights)  # torchvision's ResNet init loop (zero_init_residual off)


@MODELS.register("resnet18", **_RESNET)
def resnet18(num_classes: int, in_channels: int) -> nn.Module:
    return _torchvision("resnet18", num_classes, in_channels)


@MODELS.register("resnet34", **_RESNET)
def resnet34(num_classes: int, in_channels: int) -> nn.Module:
    return _torchvision("resnet34", num_classes, in_channels)


@MODELS.register("resnet50", **_RESNET)
def resnet50(num_classes: int, in_channels: int) -> nn.Module:
    return _torchvision("resnet50", num_classes, in_channels)


@MODELS.register("mobilenet_v2", **_IMAGENET, init=_mobilenet_init)
def mobilenet_v2(num_classes: int, in_channels: int) -> nn.Module:
    return _torchvision("mobilenet_v2", num_classes, in_channels)
