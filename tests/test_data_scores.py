"""The data-driven scores against hand-computed values: HRank's feature-map ranks on matrices of
known rank, Molchanov's Taylor criterion on a tiny network whose gradients are known in closed
form, torch-pruning's LAMP on hand-made weights; and the hrank/taylor pruners and criteria
built on them."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from baselines.common import coupled_groups
from baselines.taylor import group_taylor
from harness.prune.criteria import CRITERIA, CriterionInput, lowest
from harness.prune.plugins import load_builtin_pruners
from harness.prune.prunable import PrunableNetwork
from harness.prune.probe import Probe, RankRecorder, feature_map_rank
from harness.prune.pruner import PRUNERS
from tests.pruner_ctx import FakeCtx

load_builtin_pruners()


class Tiny(nn.Module):
    """conv1 (2 -> 4, 1x1) -> bn1 -> ReLU -> conv2 (4 -> 3, 1x1) -> bn2 -> ReLU -> mean -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 3, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


# ------------------------------------------------------------------------- HRank
def test_feature_map_rank_of_known_matrices() -> None:
    eye = torch.eye(4)
    rank1 = torch.outer(torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 0, 2, 1]))
    rank2 = eye.clone()
    rank2[2:, 2:] = 0
    maps = torch.stack([torch.stack([eye, rank1, torch.zeros(4, 4), rank2]),
                        torch.stack([rank1, rank1, eye, rank2])])  # (2 images, 4 channels, 4, 4)
    assert feature_map_rank(maps).tolist() == [4 + 1, 1 + 1, 0 + 4, 2 + 2]


def _rank_images() -> torch.Tensor:
    """Input channel a: the identity (rank 4); b: a rank-1 outer product; both non-negative."""
    a = torch.eye(4)
    b = torch.outer(torch.tensor([1.0, 2, 3, 4]), torch.tensor([4.0, 3, 2, 1]))
    return torch.stack([torch.stack([a, b])] * 3)  # (3, 2, 4, 4)


def _identity_bn(model: Tiny) -> Tiny:
    """Batch norms that pass values through in eval mode (scale 1, shift 0, mean 0, var 1 - eps)."""
    for bn in (model.bn1, model.bn2):
        bn.running_mean.zero_()
        bn.running_var.fill_(1 - bn.eps)
    return model


def test_hrank_removes_the_lowest_rank_channels() -> None:
    model = _identity_bn(Tiny())
    with torch.no_grad():  # conv1 channel maps: a (rank 4), b (rank 1), a + b (rank 4), b / 2 (rank 1)
        model.conv1.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1], [0, 0.5]]).reshape(4, 2, 1, 1))
    with RankRecorder([model.bn1]) as ranks, torch.no_grad():
        model.eval()(_rank_images())
    assert ranks.images == 3 and ranks.mean(model.bn1).tolist() == [4.0, 1.0, 4.0, 1.0]

    class Ctx(FakeCtx):
        def training_batches(self, images, seed):
            return [(_rank_images(), torch.zeros(3, dtype=torch.long))]

    ctx = Ctx(model, 4, in_channels=2, model_name="tiny")
    cfg = PRUNERS.get("hrank").Config(rates=(0.5, 0.0))  # one rate per layer group: conv1, conv2
    fields = PRUNERS.get("hrank")(cfg).prune(ctx)
    assert model.conv1.weight.reshape(2, 2).tolist() == [[1.0, 0.0], [1.0, 1.0]]  # channels 0 and 2 kept
    assert fields["layer_rates"] == {"conv1": 0.5, "conv2": 0.0} and fields["rank_images"] == 3


# ------------------------------------------------------------------------- Taylor
def _taylor_setup():
    torch.manual_seed(0)
    model = Tiny().train()
    with torch.no_grad():
        model.bn1.weight.copy_(torch.tensor([1.0, -0.5, 2.0, 0.3]))
        model.bn1.bias.copy_(torch.tensor([0.2, -1.0, 0.5, 0.0]))
    return model


def test_taylor_criterion_equals_the_closed_form() -> None:
    """Loss = sum_c v_c x mean over (n, h, w) of y_c, y = bn1's output in train mode: dL/dy_c =
    v_c / (N H W), and the batch mean of y_c is beta_c, so sum y dL/dy = v_c beta_c exactly."""
    model = _taylor_setup()
    v = torch.tensor([0.7, -1.3, 0.4, 2.0])
    y = model.bn1(model.conv1(torch.randn(5, 2, 3, 3)))
    (y.mean(dim=(0, 2, 3)) * v).sum().backward()
    net = PrunableNetwork(model, 3, 2)
    group = next(g for g in coupled_groups(net) if g.root.name == "conv1")
    expected = (v * model.bn1.bias.detach()) ** 2
    assert torch.allclose(group_taylor(group).float(), expected, atol=1e-6)


def test_taylor_is_the_gate_criterion_on_a_real_loss() -> None:
    """(gamma dL/dgamma + beta dL/dbeta)^2 == (sum_{n,h,w} y dL/dy)^2 (the code's gate at 1)."""
    model = _taylor_setup()
    x, labels = torch.randn(6, 2, 3, 3), torch.tensor([0, 1, 1, 0, 1, 0])
    captured = {}
    model.bn1.register_forward_hook(lambda m, i, o: captured.update(y=o) or o.retain_grad())
    nn.functional.cross_entropy(model(x), labels).backward()
    y = captured["y"]
    gate = (y * y.grad).sum(dim=(0, 2, 3)) ** 2
    group = next(g for g in coupled_groups(PrunableNetwork(model, 3, 2)) if g.root.name == "conv1")
    assert torch.allclose(group_taylor(group).float(), gate.detach(), rtol=1e-4, atol=1e-9)


def test_taylor_pruner_averages_minibatches_and_gates_the_lowest() -> None:
    model = _taylor_setup()
    ctx = FakeCtx(model, 3, in_channels=2, model_name="tiny", classes=2)
    taylor = PRUNERS.get("taylor")(PRUNERS.get("taylor").Config(target_flops=0.2, frequency=2, prune_iterations=1))
    taylor.prune(ctx)
    groups = taylor.structure(ctx)[1]
    seen = []
    for seed in range(2):  # two minibatches, then the pruning iteration
        model.zero_grad()
        x, y = ctx.training_batches(8, seed)[0]
        nn.functional.cross_entropy(model(x), y).backward()
        seen.append([group_taylor(g) for g in groups])
        taylor.after_backward(ctx)
    mean = [(a + b) / 2 for a, b in zip(*seen)]
    assert all(torch.allclose(m, a) for m, a in zip(mean, taylor.averaged))
    assert taylor.iteration == 1 and taylor.done()
    assert sum(len(p) for p in taylor.pruned) > 0
    for g in groups:  # each group loses its lowest channels (how many: the global ranking and the target)
        assert taylor.pruned[g.index] == sorted(lowest(mean[g.index], len(taylor.pruned[g.index])))
    for g in groups:  # gated: scale and shift 0, so the channel outputs exactly 0
        for layer, idxs in g.members:
            for k in taylor.pruned[g.index]:
                assert float(layer.bn.weight.detach()[idxs[k]]) == 0 == float(layer.bn.bias.detach()[idxs[k]])
    fields = taylor.on_train_end(ctx)
    assert fields["finished_in_training"] is True and fields["target_reached"] and 0.2 <= ctx.reduction() <= 0.205


# ------------------------------------------------------------------------- LAMP (torch-pruning's channel form)
def test_lamp_scores_by_hand() -> None:
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([3.0, 1.0, 2.0, 4.0]).reshape(4, 1, 1, 1))
    dg = tp.DependencyGraph().build_dependency(nn.Sequential(conv), example_inputs=torch.zeros(1, 1, 2, 2))
    group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, [0, 1, 2, 3])
    s = [9.0, 1.0, 4.0, 16.0]  # squared L2 magnitudes; LAMP: s_u / sum of the s_v >= s_u
    expected = [9 / 25, 1 / 30, 4 / 29, 16 / 16]
    assert tp.importance.LAMPImportance(p=2)(group).tolist() == pytest.approx(expected)
    assert s == [w ** 2 for w in conv.weight.flatten().tolist()]


# ------------------------------------------------------------------------- the criteria registry (LAASP's pool)
def test_data_criteria_read_the_probe() -> None:
    model = _identity_bn(Tiny()).eval()
    with torch.no_grad():
        model.conv1.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1], [0, 0.5]]).reshape(4, 2, 1, 1))
    x = _rank_images()
    probe = Probe(model, x, torch.zeros(3, dtype=torch.long), [model.bn1, model.bn2])
    gen = torch.Generator()
    assert CRITERIA.get("hrank")(CriterionInput(model.conv1, model.bn1, gen, probe)).tolist() == [4.0, 1.0, 4.0, 1.0]
    taylor = CRITERIA.get("taylor")(CriterionInput(model.conv1, model.bn1, gen, probe))
    assert taylor.shape == (4,) and bool((taylor >= 0).all())
    assert all(p.grad is None for p in model.parameters())  # the probe leaves .grad alone
    assert CRITERIA.meta("taylor")["needs_data"] and "extension" in CRITERIA.meta("hrank")["source"]
    from harness.errors import UserError

    with pytest.raises(UserError, match="scores filters from data"):
        CRITERIA.get("hrank")(CriterionInput(model.conv1, model.bn1, gen))


def test_laasp_pool_can_hold_data_criteria() -> None:
    from harness.models import build_model
    from laasp.config import LAASPConfig
    from laasp.pruner import LAASP

    torch.manual_seed(0)
    model = build_model("resnet20", 10, 3)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    cfg = LAASPConfig(target_flops=0.1, criteria=("l1", "taylor", "hrank"), step_scale=5.0, subset_size=16)
    pruner = LAASP(model, cfg, x, y, 8, 3)
    step = pruner.step()
    assert step is not None and {c.sources[0][1] for c in pruner.candidates()} <= {"l1", "taylor", "hrank"}
    assert pruner._probe is not None  # rebuilt for the pruned network on the next candidates() call
