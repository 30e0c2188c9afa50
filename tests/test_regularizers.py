"""Regularizers during training change the parameters as their formulas say: Network Slimming's
L1 subgradient on batch-norm scales, DepGraph's group sparse learning through torch-pruning, and
the weight decay the group_sl benchmark turns off meanwhile."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from harness.prune.plugins import load_builtin_pruners
from harness.prune.pruner import PRUNERS
from harness.train.engine import Engine, OptimConfig, TrainHooks, TrainingState
from harness.train.device import Precision
from tests.pruner_ctx import FakeCtx

load_builtin_pruners()


class ConvBNConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return self.fc(x.mean(dim=(2, 3)))


def _model() -> ConvBNConv:
    torch.manual_seed(0)
    model = ConvBNConv()
    with torch.no_grad():
        model.bn1.weight.copy_(torch.tensor([0.5, -2.0, 0.0]))
        model.bn2.weight.copy_(torch.tensor([1.5, -0.1]))
    for p in model.parameters():  # known gradients: all zero before the regularizer acts
        p.grad = torch.zeros_like(p)
    return model


def test_slimming_adds_lambda_sign_gamma_during_sparsity_training_only() -> None:
    model = _model()
    ctx = FakeCtx(model, 3, in_channels=2, model_name="resnet20")  # a ResNet: the paper's lambda 1e-5
    slimming = PRUNERS.get("slimming")(PRUNERS.get("slimming").Config(target_flops=0.3))
    ctx.stage = "train"
    slimming.after_backward(ctx)
    assert model.bn1.weight.grad.tolist() == pytest.approx([1e-5, -1e-5, 0.0], rel=1e-6)  # sign(0) = 0
    assert model.bn2.weight.grad.tolist() == pytest.approx([1e-5, -1e-5], rel=1e-6)
    assert model.bn1.bias.grad.abs().sum() == 0 and model.conv1.weight.grad.abs().sum() == 0  # scales only
    ctx.stage = "finetune"  # fine-tuning: no penalty
    slimming.after_backward(ctx)
    assert model.bn1.weight.grad.tolist() == pytest.approx([1e-5, -1e-5, 0.0], rel=1e-6)
    vgg = PRUNERS.get("slimming")(PRUNERS.get("slimming").Config(target_flops=0.3))
    assert vgg.strength("vgg16") == 1e-4 and vgg.strength("resnet56") == 1e-5
    mine = PRUNERS.get("slimming")(PRUNERS.get("slimming").Config(target_flops=0.3, reg=3e-3))
    assert mine.strength("vgg16") == 3e-3


def test_depgraph_group_sparse_learning_follows_its_formula() -> None:
    """GroupNormPruner.regularize: grad += reg x alpha^((max s - s_c)/(max s - min s)) x w for every
    slice of channel c's group, s_c = sqrt of the group's mean squared magnitude / its max."""
    model = _model()
    ctx = FakeCtx(model, 3, in_channels=2, model_name="test")
    reg = 1e-3
    depgraph = PRUNERS.get("depgraph")(PRUNERS.get("depgraph").Config(target_flops=0.3, reg=reg))
    ctx.stage = "train"
    w1, w2, g1 = model.conv1.weight.detach().clone(), model.conv2.weight.detach().clone(), model.bn1.weight.detach()
    depgraph.after_backward(ctx)
    # conv1's group: its output rows, bn1's scales, conv2's input columns (mean over the 3 members)
    magnitude = (w1.pow(2).flatten(1).sum(1) + w2.pow(2).transpose(0, 1).flatten(1).sum(1) + g1.pow(2)) / 3
    s = (magnitude / magnitude.max()).sqrt()
    gamma = 16 ** ((s.max() - s) / (s.max() - s.min()))
    assert torch.allclose(model.conv1.weight.grad, reg * gamma.view(-1, 1, 1, 1) * w1, rtol=1e-5, atol=1e-12)
    assert torch.allclose(model.bn1.weight.grad[:3], reg * gamma * g1, rtol=1e-5, atol=1e-12)
    # conv2's input columns get conv1's group term (plus conv2's own group's row term on its rows)
    assert torch.allclose(model.bn1.bias.grad, torch.zeros(3))  # shifts are not regularised (bias=False)
    assert depgraph.weight_decay(ctx) == 0.0  # the benchmark: no weight decay while regularising
    ctx.stage = "finetune"
    assert depgraph.weight_decay(ctx) is None
    before = model.conv1.weight.grad.clone()
    depgraph.after_backward(ctx)
    assert torch.equal(model.conv1.weight.grad, before)  # sparse learning only before the prune point


def test_engine_applies_the_pruners_weight_decay() -> None:
    from types import SimpleNamespace

    model = ConvBNConv()
    data = SimpleNamespace(train_batches=lambda b, s: iter([(torch.randn(4, 2, 3, 3), torch.tensor([0, 1, 0, 1]))]),
                           test_batches=lambda b: iter([(torch.randn(4, 2, 3, 3), torch.tensor([0, 1, 0, 1]))]))
    engine = Engine(data, OptimConfig(lr=0.1, weight_decay=5e-4), Precision(torch.device("cpu"), False), 0,
                    progress=False)
    state = TrainingState(model)
    calls = []
    engine.run_epochs(state, [0], "train", hooks=TrainHooks(after_backward=lambda: calls.append("b"),
                                                            after_epoch=lambda: calls.append("e"), weight_decay=0.0))
    assert all(g["weight_decay"] == 0.0 for g in state.optimizer.param_groups) and calls == ["b", "e"]
    # tp's own regularizer is what depgraph calls (not a re-implementation)
    assert isinstance(PRUNERS.get("depgraph")(PRUNERS.get("depgraph").Config(target_flops=0.3)).library_pruner(
        FakeCtx(model, 3, in_channels=2)), tp.pruner.GroupNormPruner)
