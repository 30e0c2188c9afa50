"""The baseline pruners: FLOPs targets met on the zoo, uniform ratios, the papers' criteria on
hand-made layers, the global ranking's normalisation and caps, and real runs through the harness."""
from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import pytest
import torch
import torch_pruning as tp
from torch import nn

from baselines.common import FINISH_TOLERANCE, BaselineConfig, FlopsModel, coupled_groups, solve
from baselines.global_l1 import global_events
from baselines.uniform import uniform_events
from harness.errors import UserError
from harness.prune.flops import count_cost
from harness.models import build_model
from harness.prune.prunable import PrunableNetwork
from harness.prune.plugins import load_builtin_pruners
from harness.prune.pruner import PRUNERS
from tests.pruner_ctx import FakeCtx

load_builtin_pruners()

BASELINES = ("l1_uniform", "gm_uniform", "random", "l1_global")
# The published methods, with settings that keep the test fast (fewer torch-pruning steps, few
# images for ranks and Taylor scores): what is tested is the landing on the FLOPs target.
PUBLISHED = {
    "pfec": {}, "sfp": {}, "fpgm": {"norm_share": 0.25}, "hrank": {"rank_images": 4}, "slimming": {},
    "taylor": {"frequency": 1, "prune_iterations": 2}, "depgraph": {"iterative_steps": 20},
    "lamp": {"iterative_steps": 20}, "tp:GroupMagnitudeImportance": {"iterative_steps": 20, "global_ranking": True},
    "tp:GroupTaylorImportance": {"iterative_steps": 20},
}
UNIFORM = ("l1_uniform", "gm_uniform", "random")
# ResNet-50 and MobileNetV2 at 64x64 to stay fast: the FLOPs *fraction* is what is tested.
ZOO = (("resnet56", 32), ("vgg16", 32), ("resnet50", 64), ("mobilenet_v2", 64))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def prune(pruner: str, model: nn.Module, size: int, target: float, in_channels: int = 3, seed: int = 0,
          **config) -> tuple[dict, FakeCtx]:
    ctx = FakeCtx(model, size, in_channels, seed)
    cfg = PRUNERS.get(pruner).Config(target_flops=target, **config)
    cfg.validate()
    return PRUNERS.get(pruner)(cfg).prune(ctx), ctx


def original_filters(name: str, size: int) -> dict[str, int]:
    net = PrunableNetwork(build_model(name, 10, 3), size, 3)
    return {layer.name: layer.original_filters for layer in net.layers}


# ------------------------------------------------------------------------- FLOPs targets
@pytest.mark.parametrize("pruner", BASELINES)
@pytest.mark.parametrize(("name", "size"), ZOO, ids=[z[0] for z in ZOO])
def test_target_reached_within_one_point(name: str, size: int, pruner: str, caplog) -> None:
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="baselines"):
        fields, ctx = prune(pruner, build_model(name, 10, 3), size, 0.55)
    assert not caplog.records, "FLOPs model and counter disagree"
    reached = ctx.reduction()
    assert fields["target_reached"] and 0.55 <= reached < 0.56, reached
    assert fields["trace"][0]["flops_reduction"] == pytest.approx(reached)
    assert all(0 <= r < 1 for r in fields["layer_rates"].values())
    out = ctx.model(torch.zeros(2, 3, size, size))  # the pruned network still runs
    assert out.shape == (2, 10)


@pytest.mark.parametrize("pruner", PUBLISHED)
@pytest.mark.parametrize(("name", "size"), ZOO, ids=[z[0] for z in ZOO])
def test_published_methods_reach_the_target_within_half_a_point(name: str, size: int, pruner: str) -> None:
    """prune at the prune point, then the end of training (soft masks removed, Taylor's gates)."""
    torch.manual_seed(0)
    model = build_model(name, 10, 3)
    ctx = FakeCtx(model, size, model_name=name, batch_size=4)
    p = PRUNERS.get(pruner)(PRUNERS.get(pruner).Config(target_flops=0.55, **PUBLISHED[pruner]))
    fields = p.prune(ctx)
    fields = p.on_train_end(ctx) or fields
    reached = ctx.reduction()
    assert fields["target_reached"] and 0.55 <= reached < 0.555, reached
    assert fields["trace"][-1]["flops_reduction"] == pytest.approx(reached, abs=1e-9)
    assert all(0 <= r < 1 for r in fields["layer_rates"].values()) and max(fields["layer_rates"].values()) > 0
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 10)


@pytest.mark.parametrize(("name", "size"), ZOO, ids=[z[0] for z in ZOO])
def test_every_target_lands_within_half_a_point(name: str, size: int) -> None:
    """The solver on its own, targets 5% .. 90%: never under, at most FINISH_TOLERANCE over."""
    torch.manual_seed(0)
    net = PrunableNetwork(build_model(name, 10, 3), size, 3)
    groups = coupled_groups(net)
    model = FlopsModel(net, groups)
    base = model.current
    for order in ([g for _, g in uniform_events(groups)], [g for _, g, _ in global_events(groups, torch.Generator())]):
        for target in [t / 100 for t in range(5, 91)]:
            sol = solve(order, model, (1 - target) * base, FINISH_TOLERANCE * base)
            assert target <= 1 - sol.flops / base <= target + FINISH_TOLERANCE, (target, sol)


@pytest.mark.parametrize(("name", "size"), ZOO, ids=[z[0] for z in ZOO])
def test_flops_model_equals_counter(name: str, size: int) -> None:
    """The analytic model the solver bisects on is exact, for arbitrary per-group removals."""
    model = build_model(name, 10, 3)
    net = PrunableNetwork(model, size, 3)
    groups = coupled_groups(net)
    gen = torch.Generator().manual_seed(1)
    counts = [int(torch.randint(0, g.cap + 1, (1,), generator=gen)) for g in groups]
    predicted = FlopsModel(net, groups).flops(counts)
    for g, n in zip(groups, counts):
        if n:
            net.remove(g.root, list(range(n)))
    assert predicted == count_cost(model, size, 3).flops


# ------------------------------------------------------------------------- uniform ratio
STAGE1 = ["conv1"] + [f"layer1.{i}.conv2" for i in range(9)]  # ResNet-56: coupled by the additions


@pytest.mark.parametrize(("name", "size", "target", "passed_over"), [
    ("resnet56", 32, 0.55, []),
    ("resnet56", 32, 0.56, STAGE1),  # one more stage-1 channel would land 1.5 pt past 56%
    ("mobilenet_v2", 64, 0.3, []),
])
def test_uniform_ratio_equal_across_layers(name: str, size: int, target: float, passed_over: list) -> None:
    filters = original_filters(name, size)
    rates = {}
    for pruner in UNIFORM:
        torch.manual_seed(0)
        fields, ctx = prune(pruner, build_model(name, 10, 3), size, target)
        r = fields["uniform_ratio"]
        assert set(fields["layer_rates"]) == set(filters) and fields["passed_over"] == passed_over
        assert target <= ctx.reduction() <= target + FINISH_TOLERANCE
        for layer, rate in fields["layer_rates"].items():
            # every layer lost round(r x filters): equal up to the one-filter granularity; a
            # passed-over group kept one filter more
            slack = 1.5 if layer in passed_over else 0.5
            assert rate > 0 and abs(rate - r) <= slack / filters[layer] + 1e-9, (layer, rate, r)
        rates[pruner] = fields["layer_rates"]
    assert rates["l1_uniform"] == rates["gm_uniform"] == rates["random"]  # the ratio depends on counts only
    if name == "resnet56":  # stage 1 shares its channels through the additions (and the stem)
        assert len({rates["l1_uniform"][n] for n in STAGE1}) == 1


class Tiny(nn.Module):
    """conv1 (2 -> 4, 1x1: each filter is a 2-vector) -> conv2 (4 -> 4, 3x3) -> classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


# conv1's filters: L1 norms 1.0, 1.1, 1.2, 2.0; the geometric median sits near filter 2.
FILTERS = [(1.0, 0.0), (-1.1, 0.0), (0.6, 0.6), (0.0, 2.0)]


def tiny(conv1=FILTERS, conv2_l1=(4.0, 4.0, 4.0, 4.0)) -> Tiny:
    model = Tiny()
    with torch.no_grad():
        model.conv1.weight.copy_(torch.tensor(conv1).reshape(4, 2, 1, 1))
        model.conv2.weight.copy_(torch.tensor(conv2_l1).reshape(4, 1, 1, 1).expand(4, 4, 3, 3) / 36)
    return model


def kept_conv1_rows(model: Tiny) -> list[tuple[float, float]]:
    return [tuple(round(v, 6) for v in row) for row in model.conv1.weight.reshape(-1, 2).tolist()]


def test_l1_uniform_removes_the_smallest_l1_filter() -> None:
    model = tiny()
    # 1% needs a single filter; conv1 and conv2 tie (4 filters each) and module order picks conv1
    fields, _ = prune("l1_uniform", model, 4, 0.01, in_channels=2)
    assert fields["layer_rates"] == {"conv1": 0.25, "conv2": 0.0}
    assert kept_conv1_rows(model) == [FILTERS[1], FILTERS[2], FILTERS[3]]  # filter 0: L1 = 1.0


def test_gm_uniform_is_the_papers_geometric_median_on_raw_weights() -> None:
    # He et al. 2019: the filter minimising sum_j ||F_i - F_j||_2 (raw weights) is the most replaceable.
    paper = [sum(math.dist(a, b) for b in FILTERS) for a in FILTERS]
    assert min(range(4), key=paper.__getitem__) == 2
    model = tiny()
    prune("gm_uniform", model, 4, 0.01, in_channels=2)
    assert kept_conv1_rows(model) == [FILTERS[0], FILTERS[1], FILTERS[3]]  # filter 2 went, not the L1-smallest 0

    # Side note: torch-pruning's FPGMImportance compares |w|^2 (signs dropped, squared), not the
    # weights, and here it would pick filter 0: (1, 0) and (-1.1, 0) look alike once squared.
    conv = tiny().conv1
    dg = tp.DependencyGraph().build_dependency(nn.Sequential(conv), example_inputs=torch.zeros(1, 2, 4, 4))
    group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, [0, 1, 2, 3])
    assert int(torch.argmin(tp.importance.FPGMImportance()(group))) == 0


def test_random_is_seeded_from_the_run_seed() -> None:
    def kept(seed: int) -> list:
        torch.manual_seed(123)  # same weights every time; only the run seed changes
        model = build_model("resnet20", 10, 3)
        prune("random", model, 32, 0.3, seed=seed)
        return model.layer2[0].conv1.weight.sum(dim=(1, 2, 3)).tolist()

    assert kept(0) == kept(0) and kept(0) != kept(1)


# ------------------------------------------------------------------------- global ranking
def test_global_ranking_normalises_by_layer_mean() -> None:
    # conv1 L1 = 100 x (1, 2, 3, 4): normalised 0.4 0.8 1.2 1.6; conv2 L1 = (1, 1, 1, 5): 0.5 0.5 0.5 2.5.
    # Raw L1 would take all of conv2 first; each layer keeps its strongest filter (cap: >= 1 kept).
    model = tiny(conv1=[(100.0, 0.0), (-200.0, 0.0), (150.0, 150.0), (0.0, 400.0)], conv2_l1=(1, 1, 1, 5))
    net = PrunableNetwork(model, 4, 2)
    events = global_events(coupled_groups(net), torch.Generator())
    assert [(g, k) for _, g, k in events] == [(0, 0), (1, 0), (1, 1), (1, 2), (0, 1), (0, 2)]
    assert [round(s, 6) for s, _, _ in events] == [0.4, 0.5, 0.5, 0.5, 0.8, 1.2]


def test_caps_keep_every_layer_alive() -> None:
    fields, ctx = prune("l1_global", build_model("vgg16", 10, 3), 32, 0.95)
    assert fields["target_reached"] and max(fields["layer_rates"].values()) < 1
    for pruner in ("l1_global", "l1_uniform"):
        fields, ctx = prune(pruner, build_model("vgg16", 10, 3), 32, 0.9, max_prune_rate=0.5)
        assert not fields["target_reached"] and ctx.reduction() < 0.9  # unreachable: says so
        assert max(fields["layer_rates"].values()) <= 0.5


# ------------------------------------------------------------------------- config
@pytest.mark.parametrize(("kwargs", "words"), [
    (dict(target_flops=0.0), "--target-flops must be a fraction in (0, 1)"),
    (dict(target_flops=1.0), "--target-flops must be a fraction in (0, 1)"),
    (dict(target_flops=0.5, max_prune_rate=0.0), "--max-prune-rate must be in (0, 1]"),
    (dict(target_flops=0.5, prune_epoch=-1), "--prune-epoch must be >= 0"),
    (dict(target_flops=0.5, prune_epoch=5), "--prune-epoch 5 is after the last epoch (--epochs 3)"),
])
def test_config_errors(kwargs: dict, words: str) -> None:
    for name in BASELINES:
        with pytest.raises(UserError) as err:
            PRUNERS.get(name).Config(**kwargs).validate(SimpleNamespace(epochs=3))
        assert words in str(err.value) and "\n" not in str(err.value)


def test_every_baseline_has_the_standard_config() -> None:
    for name in BASELINES:
        cfg = PRUNERS.get(name).Config(target_flops=0.5)
        assert isinstance(cfg, BaselineConfig) and cfg.prune_epoch == 0 and cfg.max_prune_rate == 1.0


# ------------------------------------------------------------------------- through the harness
def run_in_process(*argv: str) -> dict:
    """``run_bench.py run ...`` in this process (same flags, configs and job runner as the CLI)."""
    from harness.cli import build_parser
    from harness.job.options import job_config_from_options, pruner_config_from_options
    from harness.job.run import run_job

    options = vars(build_parser().parse_args(["run", *argv, "--quiet", "--device", "cpu"]))
    return run_job(job_config_from_options(options, pruner_config=pruner_config_from_options(options)))


def test_prune_epoch_zero_prunes_the_start_network(tmp_path) -> None:
    """Three-stage mode's pruner side: prune at epoch 0, then the schedule fine-tunes."""
    record = run_in_process("--pruner", "l1_uniform", "--model", "resnet20", "--dataset", "digits", "--epochs", "1",
                            "--prune-epoch", "0", "--target-flops", "0.4", "--train-subset", "200",
                            "--test-subset", "100", "--out", str(tmp_path / "run"))
    assert record["pre_prune"] is None and record["epochs_trained"] == 1
    assert [h["phase"] for h in record["history"]] == ["finetune"]
    assert 0.4 <= record["flops"]["reduction"] < 0.41 and record["target_reached"]
    assert record["config"]["pruner_config"] == {
        "target_flops": 0.4, "prune_epoch": 0, "max_prune_rate": 0.75, "schedule": "oneshot",
        # the iterative schedule's settings, from the recipe (unused by the one-shot schedule)
        "step_rule": "flops", "step_scale": 1.0, "recover_flop": 0.02, "recover_epoch": 6, "recover_lr": "schedule"}
    assert (tmp_path / "run" / "record.json").is_file()


@pytest.mark.slow
def test_short_cifar_runs_have_laasp_record_fields(cifar10_root, tmp_path) -> None:
    common = ["--model", "resnet20", "--dataset", "cifar10", "--data-root", str(cifar10_root),
              "--train-subset", "500", "--test-subset", "200", "--epochs", "2", "--prune-epoch", "1"]
    laasp = run_in_process("--pruner", "laasp", *common, "--target-flops", "0.05", "--criteria", "l1",
                           "--subset-size", "64", "--recover-epoch", "0")
    for name in BASELINES:
        record = run_in_process("--pruner", name, *common, "--target-flops", "0.3")
        assert set(laasp) <= set(record), set(laasp) - set(record)
        assert set(record) - set(laasp) <= {"uniform_ratio", "score_normalisation", "passed_over"}
        assert set(record["trace"][0]) == set(laasp["trace"][0])
        assert record["target_reached"] and 0.3 <= record["flops"]["reduction"] < 0.31
        assert [h["phase"] for h in record["history"]] == ["train", "finetune"]
        assert record["pre_prune"] is not None and 0 <= record["final"]["top1"] <= 100
