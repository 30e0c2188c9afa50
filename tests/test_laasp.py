"""LAASP: the fast candidate loss equals physical removal, step rules, caps, resume, reference parity."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from harness.job.checkpoint import load_checkpoint, save_checkpoint
from harness.prune.flops import count_cost
from harness.models import build_model
from harness.prune.prunable import PrunableNetwork
from laasp.config import LAASPConfig
from laasp.pruner import LAASP, prune_to_target
from laasp.reference import reference_select
from laasp.selection import Candidate, CandidateEvaluator


def _randomised(name: str, in_channels: int = 3):
    """A model whose batch norms are not identities, so masking errors would show."""
    torch.manual_seed(0)
    model = build_model(name, 10, in_channels)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.normal_(1, 0.2)
            m.bias.data.normal_(0, 0.2)
    return model.eval()


@pytest.mark.parametrize("name,layer", [
    ("resnet20", "conv1"),            # residual group: stem + every block of stage 1 coupled by the additions
    ("resnet20", "layer2.0.downsample.0"),  # residual group through a projection shortcut
    ("resnet20", "layer2.1.conv1"),   # inner group: one conv, its BN, the next conv's inputs
    ("vgg16", "features.7"),
    ("mobilenet_v2", "features.3.conv.0.0"),  # expansion conv coupled with a depthwise conv
    ("mobilenet_v2", "features.3.conv.1.0"),  # the depthwise conv itself
])
def test_masked_loss_equals_physically_pruned_copy(name, layer) -> None:
    model = _randomised(name)
    x, y = torch.randn(12, 3, 32, 32), torch.randint(0, 10, (12,))
    net = PrunableNetwork(model, 32, 3)
    idxs = [0, 3, 5]
    cand = Candidate(net.removal(net.by_name[layer], idxs), [(layer, "l1")])
    CandidateEvaluator(model, x, y, chunk_size=5).losses([cand])
    pruned = copy.deepcopy(model)
    pnet = PrunableNetwork(pruned, 32, 3)
    pnet.remove(pnet.by_name[layer], idxs)
    with torch.no_grad():
        expected = F.cross_entropy(pruned(x).double(), y).item()
    assert cand.loss == pytest.approx(expected, rel=1e-4)
    assert any(len(c.removal.masks) for c in [cand])


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "vgg16"])
def test_flops_per_filter_matches_physical_removal(name) -> None:
    model = build_model(name, 10, 3)
    net = PrunableNetwork(model, 32, 3)
    per_filter = net.flops_per_filter()
    before = count_cost(model, 32, 3).flops
    for layer in net.layers[:: max(1, len(net.layers) // 6)]:
        pruned = copy.deepcopy(model)
        pnet = PrunableNetwork(pruned, 32, 3)
        pnet.remove(pnet.by_name[layer.name], [0])
        assert per_filter[layer.name] == pytest.approx(before - count_cost(pruned, 32, 3).flops), layer.name


def _digits_like(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _pruner(target=0.3, **kw) -> LAASP:
    model = _randomised("resnet20", in_channels=1)
    x, y = _digits_like()
    return LAASP(model, LAASPConfig(target_flops=target, chunk_size=48, **kw), x, y, 8, 1)


def test_reaches_target_within_one_step_respecting_caps_and_pool() -> None:
    pruner = _pruner(target=0.3, criteria=("l1", "eucl"), max_prune_rate=0.5)
    assert prune_to_target(pruner)
    trace = pruner.trace
    assert trace[-1]["flops_reduction"] >= 0.3 > (trace[-2]["flops_reduction"] if len(trace) > 1 else 0)
    assert {s["criterion"] for s in trace} <= {"l1", "eucl"}
    assert max(pruner.layer_rates().values()) <= 0.5
    assert sum(pruner.removed_per_criterion().values()) == sum(s["removed"] for s in trace)
    for s in trace:
        assert s["runner_up_loss"] is None or s["runner_up_loss"] >= s["loss"]


def test_flops_step_size_follows_the_formula() -> None:
    pruner = _pruner(step_scale=2.0)
    per_filter = pruner.net.flops_per_filter()
    for layer in pruner.net.layers:
        drop = per_filter[layer.name] / pruner.baseline_flops
        assert pruner.flops_step[layer.name] == max(1, round(2.0 / (100 * drop)))


def test_ratio_step_and_capped_layers_leave() -> None:
    pruner = _pruner(target=0.95, step_rule="ratio", step_scale=0.1, max_prune_rate=0.25)
    layer = pruner.net.layers[0]
    assert pruner.step_size(layer) == max(1, round(0.1 * layer.filters))
    reached = prune_to_target(pruner)
    assert not reached  # 95% is impossible when every layer keeps 75% of its filters
    assert pruner.open_layers() == []
    assert all(r <= 0.25 for r in pruner.layer_rates().values())
    assert pruner.step() is None


def test_resume_between_steps_gives_the_same_trace(tmp_path) -> None:
    criteria = ("l1", "cos", "random")
    full = _pruner(criteria=criteria)
    for _ in range(5):
        full.step()
    part = _pruner(criteria=criteria)
    for _ in range(2):
        part.step()
    path = save_checkpoint(tmp_path / "c.pt", part.model, "resnet20", 10, 1, extra_state={"laasp": part.state_dict()})
    model, payload = load_checkpoint(path)
    x, y = _digits_like()
    resumed = LAASP(model.eval(), part.config, x, y, 8, 1, state=payload["extra_state"]["laasp"])
    for _ in range(3):
        resumed.step()
    strip = lambda t: [{k: v for k, v in s.items() if k != "selection_s"} for s in t]  # noqa: E731
    assert strip(resumed.trace) == strip(full.trace)


def test_fast_selection_picks_what_the_authors_loop_picks() -> None:
    pruner = _pruner(target=0.5)
    for _ in range(4):
        ref = reference_select(pruner)
        step = pruner.step()
        assert (step.layer, step.criterion) == (ref.layer, ref.criterion)
        assert step.loss == pytest.approx(ref.loss, rel=1e-4)


def test_approx_mode_reports_agreement() -> None:
    pruner = _pruner(selection="approx", approx_check=True, approx_start_fraction=0.25)
    for _ in range(3):
        step = pruner.step()
        assert step.approx_agrees in (True, False)


def test_exact_mode_with_shadow_approx_check_keeps_exact_picks() -> None:
    plain, checked = _pruner(), _pruner(approx_check=True, approx_start_fraction=0.25)
    for _ in range(3):
        a, b = plain.step(), checked.step()
        assert (a.layer, a.criterion, a.removed) == (b.layer, b.criterion, b.removed)  # exact is still applied
        assert a.approx_agrees is None and b.approx_agrees in (True, False)
        # the shadow search is timed apart, so selection_s is what a run without the check spends
        assert a.check_s == 0.0 and b.check_s > 0.0 and b.selection_s > 0.0
