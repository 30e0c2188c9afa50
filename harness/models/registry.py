"""The model registry and what every model shares (builders, input-size check, init).

Every model is a builder ``build(num_classes, in_channels) -> nn.Module`` registered in
`MODELS` with its metadata, so the rest of the harness never branches on a model name:

- ``family``: "cifar_resnet", "cifar_vgg" or "imagenet";
- ``input_size``: the canonical square input side (32 for CIFAR models, 224 for ImageNet);
- ``init``: ``init(model)`` gives a built model the family's own initial weights (what its
  constructor applies after PyTorch's default layer init); `reinit_weights` runs it on a
  pruned architecture, whose fan-outs differ from the full network's;
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

from torch import nn

from harness.errors import UserError
from harness.registry import Registry

Builder = Callable[[int, int], nn.Module]
MODELS: Registry[Builder] = Registry("model")


def build_model(name: str, num_classes: int, in_channels: int) -> nn.Module:
    """Build a freshly initialised model; unknown names raise `UserError` listing the known ones."""
    return MODELS.get(name)(num_classes, in_channels)


def reinit_weights(name: str, model: nn.Module) -> nn.Module:
    """Fresh weights for a model of registered ``name`` at the channel counts it has now (a pruned
    architecture trained from scratch): PyTorch's default init of every layer, batch-norm
    statistics reset, then the family's ``init``, as its constructor does. A slice of the full
    network's init would not do: Kaiming init scales by each layer's fan, which pruning changed."""
    init = MODELS.meta(name).get("init")
    if init is None:
        raise UserError(f"model {name} registers no init function, so it cannot be re-initialised at a pruned "
                        "width; register it with init=... (see harness/models/registry.py)")
    for m in model.modules():
        if m is not model and callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()
    init(model)
    return model


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
    """Kaiming-normal convs (He et al. 2015), unit-gain BN; what the CIFAR papers train from (and
    torchvision's ResNets: the same loop, zero_init_residual off)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
