"""Every registered model builds, runs, and can be pruned by torch-pruning's dependency graph."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from harness.errors import UserError
from harness.models import MODELS, build_model, check_input_size, classifier_modules
from harness.prune.flops import count_cost
from harness.prune.prunable import PrunableNetwork

# ImageNet models are exercised at 64x64 to keep the file fast; 224 costs ~12x more compute.
FAST_IMAGENET_SIZE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 170 s instead of 12 s under load without it


def _test_size(name: str) -> int:
    meta = MODELS.meta(name)
    size = FAST_IMAGENET_SIZE if meta["family"] == "imagenet" else meta["input_size"]
    assert size >= meta["min_input_size"]
    return size


def _logits(model: nn.Module, in_channels: int, size: int, batch: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, in_channels, size, size))


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize(("num_classes", "in_channels"), [(10, 3), (7, 1)])
def test_builds_and_outputs_logits(name: str, num_classes: int, in_channels: int) -> None:
    model = build_model(name, num_classes, in_channels)
    assert _logits(model, in_channels, _test_size(name)).shape == (2, num_classes)


def _smallest_strided_input(model: nn.Module, size: int) -> int:
    """The smallest side any stride-2 conv/pool receives for a size x size input (0: fails)."""
    seen: list[int] = []
    strided = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))
               and m.stride in (2, (2, 2))]
    handles = [m.register_forward_pre_hook(lambda _m, x: seen.append(x[0].shape[-1]))
               for m in strided]
    try:
        _logits(model, 3, size, batch=1)
    except RuntimeError:
        return 0
    finally:
        for handle in handles:
            handle.remove()
    return min(seen)


@pytest.mark.parametrize("name", MODELS.names())
def test_min_input_size_is_exact(name: str) -> None:
    """At min_input_size every downsampling layer gets >= 2 pixels; one pixel less, not."""
    model = build_model(name, 10, 3)
    size = MODELS.meta(name)["min_input_size"]
    assert _smallest_strided_input(model, size) >= 2
    assert _smallest_strided_input(model, size - 1) < 2


def test_vgg_fails_below_min_input_size() -> None:
    """The VGG limits are real: five 2x2 max-pools turn a 31-pixel side into nothing, four a 15-pixel one."""
    with pytest.raises(RuntimeError):
        _logits(build_model("vgg16_1fc", 10, 3), 3, 31, batch=1)
    with pytest.raises(RuntimeError):
        _logits(build_model("vgg16", 10, 3), 3, 15, batch=1)


def _leaf_shapes(model: nn.Module, size: int) -> list[tuple[str, tuple[int, ...]]]:
    """(module type, output shape without the batch) of every leaf module, in forward order."""
    seen: list[tuple[str, tuple[int, ...]]] = []
    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(lambda m, _i, out: seen.append((type(m).__name__, tuple(out.shape[1:]))))
               for m in leaves]
    try:
        _logits(model, 3, size)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_vgg16_is_the_authors_network() -> None:
    """The LAASP authors' models/vgg_cifar.py, depth 16: layer by layer at 32x32, their init, their cost."""
    model = build_model("vgg16", 10, 3)
    want: list[tuple[str, tuple[int, ...]]] = []
    side = 32
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]:
        if v == "M":
            side //= 2
            want.append(("MaxPool2d", (want[-1][1][0], side, side)))
        else:
            want += [("Conv2d", (v, side, side)), ("BatchNorm2d", (v, side, side)), ("ReLU", (v, side, side))]
    assert side == 2  # four max-pools leave a 2x2 map for the 2x2 average pool
    want += [("AdaptiveAvgPool2d", (512, 1, 1)), ("Linear", (512,)), ("BatchNorm1d", (512,)), ("ReLU", (512,)),
             ("Linear", (10,))]
    assert _leaf_shapes(model, 32) == want
    x = torch.randn(2, 512, 2, 2)
    assert torch.equal(model.avgpool(x), torch.nn.functional.avg_pool2d(x, 2))  # the authors' AvgPool2d(2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(c.bias is None for c in convs)
    assert all(torch.all(m.weight == 0.5) for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    cost = count_cost(model, 32, 3)
    assert cost.flops == pytest.approx(313.7e6, rel=0.01) and cost.params == pytest.approx(14.98e6, rel=0.01)


def test_vgg16_1fc_keeps_the_single_linear_form() -> None:
    model = build_model("vgg16_1fc", 10, 3)
    assert [type(m).__name__ for m in model.modules()].count("MaxPool2d") == 5
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 512


def test_vgg16_batchnorm1d_follows_its_linear_when_pruned() -> None:
    """Removing filters of the last conv shrinks the first linear's inputs only; removing the first
    linear's outputs (as torch-pruning's own pruners may) takes its BatchNorm1d channels with them."""
    model = build_model("vgg16", 10, 3).eval()
    hidden, bn1d, head = model.classifier[0], model.classifier[1], model.classifier[3]
    net = PrunableNetwork(model, 32, 3)
    assert all(isinstance(layer.module, nn.Conv2d) for layer in net.layers) and len(net.layers) == 13
    net.remove(net.layers[-1], [0, 1, 2])
    assert hidden.in_features == 509 and hidden.out_features == bn1d.num_features == 512
    assert bn1d.running_mean.shape == (512,) and head.in_features == 512
    group = net.dg.get_pruning_group(hidden, tp.prune_linear_out_channels, idxs=[0, 1])
    group.prune()
    assert hidden.out_features == bn1d.num_features == bn1d.running_var.shape[0] == head.in_features == 510
    assert _logits(model, 3, 32).shape == (2, 10)


@pytest.mark.parametrize("name", MODELS.names())
def test_classifier_is_the_output_linear(name: str) -> None:
    model = build_model(name, 7, 3)
    (head,) = classifier_modules(model)
    assert isinstance(head, nn.Linear) and head.out_features == 7


def _prune_targets(model: nn.Module) -> list[nn.Conv2d]:
    """The stem, a middle and the last conv, plus the first projection shortcut if any."""
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    picks = {0, len(named) // 2, len(named) - 1}
    picks |= set([i for i, (n, _) in enumerate(named) if "downsample" in n][:1])
    return [named[i][1] for i in sorted(picks)]


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("in_channels", [3, 1])
def test_prunable_by_dependency_graph(name: str, in_channels: int) -> None:
    num_classes = 10
    model = build_model(name, num_classes, in_channels).eval()
    size = _test_size(name)
    head = classifier_modules(model)[0]
    # The head must stay in the traced graph (pruning the last conv shrinks its inputs);
    # "ignoring" it means never choosing it as a root and never pruning its outputs.
    dg = tp.DependencyGraph().build_dependency(
        model, example_inputs=torch.randn(1, in_channels, size, size), verbose=False
    )
    for conv in _prune_targets(model):
        before = conv.out_channels
        group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=[0, 1])
        assert dg.check_pruning_group(group)
        assert not any(
            dep.target.module is head and dg.is_out_channel_pruning_fn(dep.handler)
            for dep, _ in group
        )
        group.prune()
        assert conv.out_channels == before - 2
        assert _logits(model, in_channels, size, batch=1).shape == (1, num_classes)
    assert head.out_features == num_classes


@pytest.mark.parametrize("name", ["resnet20", "vgg16", "vgg16_1fc", "mobilenet_v2"])
def test_pruner_with_classifier_ignored(name: str) -> None:
    """How pruners use `classifier_modules`: as the *pruner's* ``ignored_layers``.

    (Passing it to ``build_dependency(ignored_layers=...)`` instead drops the head from the
    traced graph, so pruning the last conv no longer shrinks its inputs and forward breaks.)
    """
    model = build_model(name, 10, 3).eval()
    size = _test_size(name)
    example = torch.randn(1, 3, size, size)
    head = classifier_modules(model)[0]
    convs_before = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    pruner = tp.pruner.MetaPruner(
        model, example, tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.5,
        ignored_layers=classifier_modules(model),
    )
    pruner.step()
    convs_after = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    assert convs_after < 0.6 * convs_before
    assert head.out_features == 10
    assert _logits(model, 3, size, batch=1).shape == (1, 10)


def test_projection_shortcuts_in_cifar_resnets() -> None:
    """He et al.'s option-A zero padding defeats the dependency graph; we use 1x1 conv + BN."""
    model = build_model("resnet56", 10, 3)
    shortcut = model.get_submodule("layer2.0.downsample")
    assert isinstance(shortcut[0], nn.Conv2d) and shortcut[0].kernel_size == (1, 1)
    assert shortcut[0].stride == (2, 2) and isinstance(shortcut[1], nn.BatchNorm2d)
    assert model.get_submodule("layer1.0").downsample is None
    assert {"conv1", "bn1", "layer1.0.conv1", "layer3.8.bn2", "fc"} <= {
        n for n, _ in model.named_modules()
    }


def test_unknown_model_lists_registered_names() -> None:
    with pytest.raises(UserError) as err:
        build_model("resnet9000", 10, 3)
    message = str(err.value)
    assert "resnet9000" in message and "\n" not in message
    assert all(name in message for name in MODELS.names())


def test_check_input_size() -> None:
    with pytest.raises(UserError) as err:
        check_input_size("vgg16_1fc", 8)
    message = str(err.value)
    assert "8x8" in message and "vgg16_1fc" in message and "32x32" in message
    assert "resnet56" in message and "\n" not in message  # suggests models that do fit
    check_input_size("vgg16_1fc", 32)
    with pytest.raises(UserError, match="16x16"):
        check_input_size("vgg16", 15)
    check_input_size("vgg16", 16)
    check_input_size("resnet20", 28)
    with pytest.raises(UserError):
        check_input_size("nope", 32)
