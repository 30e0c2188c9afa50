"""SFP and FPGM as published: soft masks at the prune point and every epoch end, regrowth in
between (SFP) or frozen masked filters (FPGM's gradient mask), the papers' scores on hand-made
filters, and a final removal that computes exactly what the masked network computes."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from baselines.common import coupled_groups, group_rows
from baselines.masks import zero_channels
from baselines.soft import geometric_median_choice
from harness.models import build_model
from harness.prune.plugins import load_builtin_pruners
from harness.prune.prunable import PrunableNetwork
from harness.prune.pruner import PRUNERS
from harness.train.engine import make_optimizer, OptimConfig, train_epoch
from tests.pruner_ctx import FakeCtx

load_builtin_pruners()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _setup(name: str, **config):
    torch.manual_seed(0)
    model = build_model("resnet20", 10, 3)
    ctx = FakeCtx(model, 8)
    pruner = PRUNERS.get(name)(PRUNERS.get(name).Config(**{"target_flops": 0.4, **config}))
    return model, ctx, pruner


def _epoch(ctx, pruner, steps: int = 3) -> None:
    """A few real training steps through the engine, with the pruner's per-step hook."""
    if ctx.state.optimizer is None:
        ctx.state.optimizer = make_optimizer(ctx.model, OptimConfig(lr=0.1))
    hook = (lambda: pruner.after_backward(ctx)) if pruner.uses("after_backward") else None
    train_epoch(ctx.model, ctx.training_batches(16 * steps, seed=ctx.state.epochs_trained), ctx.state.optimizer, 0.1,
                ctx.precision, after_backward=hook)
    ctx.state.epochs_trained += 1


def _masked_filters(pruner) -> list[torch.Tensor]:
    _, groups = pruner._structure
    return [layer.module.weight[[idxs[k] for k in pruner.pruned[g.index]]]
            for g in groups for layer, idxs in g.members if pruner.pruned[g.index]]


def test_sfp_masks_every_epoch_end_and_filters_regrow_in_between() -> None:
    model, ctx, sfp = _setup("sfp")
    _epoch(ctx, sfp)  # before the prune point: batch-norm shifts move away from 0
    sfp.prune(ctx)
    assert sum(sfp.counts) > 0 and all(float(w.detach().abs().sum()) == 0 for w in _masked_filters(sfp))
    first = [list(p) for p in sfp.pruned]
    for epoch in range(2):
        _epoch(ctx, sfp)
        # no gradient mask: zeroed filters train and grow back. (Not all: a zero filter whose
        # batch norm shift is <= 0 feeds a ReLU at 0, which passes no gradient, in the official
        # code too; and a residual channel zeroed in every conv that writes to it stays 0.)
        assert any(float(w.detach().abs().sum()) > 0 for w in _masked_filters(sfp))
        sfp.on_epoch_end(ctx)
        assert all(float(w.detach().abs().sum()) == 0 for w in _masked_filters(sfp))
    assert len(sfp.trace) == 3 and sfp.trace[0]["regrown"] is None
    assert [s["epochs_trained"] for s in sfp.trace] == [1, 2, 3]
    # the mask was chosen again from the current weights each time (the same counts per group)
    assert [len(p) for p in sfp.pruned] == [len(p) for p in first] == sfp.counts


def test_fpgm_masks_gradients_so_masked_filters_stay_zero() -> None:
    model, ctx, fpgm = _setup("fpgm")
    fpgm.prune(ctx)
    _epoch(ctx, fpgm)  # fresh optimizer: no momentum from before the mask, so they stay exactly 0
    assert all(float(w.detach().abs().sum()) == 0 for w in _masked_filters(fpgm))
    fpgm.on_epoch_end(ctx)
    assert all(float(w.detach().abs().sum()) == 0 for w in _masked_filters(fpgm))


@pytest.mark.parametrize("name", ["sfp", "fpgm"])
def test_hard_removal_computes_what_the_masked_network_does(name: str) -> None:
    model, ctx, pruner = _setup(name)
    pruner.prune(ctx)
    _epoch(ctx, pruner)
    pruner.on_epoch_end(ctx)
    _epoch(ctx, pruner)  # SFP: masked filters have regrown a little; the end uses the last mask
    pruner.on_epoch_end(ctx)
    masked = copy.deepcopy(model).eval()
    groups = coupled_groups(PrunableNetwork(masked, 8, 3))
    zero_channels(groups, pruner.pruned, batch_norm=True)  # the channels' outputs exactly zero
    x = torch.randn(4, 3, 8, 8)
    expected = masked(x)
    fields = pruner.on_train_end(ctx)
    model.eval()
    assert torch.allclose(model(x), expected, atol=1e-5, rtol=1e-4)
    assert fields["target_reached"] and 0.4 <= ctx.reduction() <= 0.405
    assert fields["trace"][-1]["flops_reduction"] == pytest.approx(ctx.reduction())
    assert fields["mask_updates"] == 3 and fields["removed_per_criterion"] == {pruner.criterion: sum(pruner.counts)}


def test_coupled_groups_are_masked_as_one_unit() -> None:
    """A residual stage's channel k is zeroed in every conv that writes to it (so it can be removed)."""
    model, ctx, sfp = _setup("sfp", target_flops=0.5)
    sfp.prune(ctx)
    _, groups = sfp._structure
    stage1 = next(g for g in groups if len(g.members) > 1 and g.root.name == "conv1")
    assert sfp.pruned[stage1.index]
    for layer, idxs in stage1.members:
        for k in sfp.pruned[stage1.index]:
            assert float(layer.module.weight[idxs[k]].detach().abs().sum()) == 0, layer.name


def test_sfp_score_is_the_l2_norm_and_fpgm_the_geometric_median() -> None:
    rows = torch.tensor([[1.0, 0.0], [-1.1, 0.0], [0.6, 0.6], [0.0, 2.0]], dtype=torch.float64)
    # L2 norms 1.0, 1.1, 0.85, 2.0: SFP zeroes filter 2 first, then 0
    assert sorted(torch.argsort(rows.norm(dim=1))[:2].tolist()) == [0, 2]
    # geometric median: sum of distances to the others, on the raw weights
    sums = [sum(math.dist(a, b) for b in rows.tolist()) for a in rows.tolist()]
    assert min(range(4), key=sums.__getitem__) == 2
    assert geometric_median_choice(rows, 0, 1) == [2]
    # norm pre-filter first (rate_norm): filter 2 (smallest L2) goes by norm, then the distances
    # are taken among the other three only: 0 and 1 are 2.1 apart, 3 is far from both
    kept = rows[[0, 1, 3]]
    among = [sum(math.dist(a, b) for b in kept.tolist()) for a in kept.tolist()]
    assert geometric_median_choice(rows, 1, 1) == sorted([2, [0, 1, 3][min(range(3), key=among.__getitem__)]])


def test_fpgm_norm_share_splits_the_count() -> None:
    model, ctx, fpgm = _setup("fpgm", norm_share=0.5)
    groups = coupled_groups(PrunableNetwork(model, 8, 3), 1.0)
    rows = [group_rows(g) for g in groups]  # before the first mask
    fpgm.prune(ctx)
    for g in groups:
        n = fpgm.counts[g.index]
        by_norm = torch.argsort(rows[g.index].norm(dim=1), stable=True)[: n // 2].tolist()
        expected = geometric_median_choice(rows[g.index], n // 2, n - n // 2)
        assert set(by_norm) <= set(fpgm.pruned[g.index]) and fpgm.pruned[g.index] == expected
