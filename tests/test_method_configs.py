"""How the published baselines are configured: PFEC's block-internal layers, skip lists and paper
presets, hand-set rate lists instead of a FLOPs target, the method cards (README table, records),
and bad input rejected with one error line before any training."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from baselines.common import coupled_groups, is_residual_tied
from harness.errors import UserError
from harness.models import build_model
from harness.prune.plugins import load_builtin_pruners
from harness.prune.prunable import PrunableNetwork
from harness.prune.pruner import PRUNERS, method_table
from tests.helpers import REPO, one_error
from tests.pruner_ctx import FakeCtx

load_builtin_pruners()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _filters(model) -> dict[str, int]:
    return {layer.name: layer.filters for layer in PrunableNetwork(model, 32, 3).layers}


def _prune(name: str, model_name: str, **config) -> tuple[dict, dict, dict, FakeCtx]:
    torch.manual_seed(0)
    model = build_model(model_name, 10, 3)
    before = _filters(model)
    groups = coupled_groups(PrunableNetwork(model, 32, 3))
    cfg = PRUNERS.get(name).Config(**config)
    cfg.validate(SimpleNamespace(model=model_name, epochs=10))
    ctx = FakeCtx(model, 32, model_name=model_name)
    fields = PRUNERS.get(name)(cfg).prune(ctx)
    tied = {layer.name for g in groups if is_residual_tied(g) for layer, _ in g.members}
    return fields, before, {"after": _filters(model), "tied": tied}, ctx


# ------------------------------------------------------------------------- PFEC
def test_pfec_leaves_residual_coupled_channels_untouched() -> None:
    fields, before, info, ctx = _prune("pfec", "resnet56", target_flops=0.5)
    assert fields["target_reached"] and 0.5 <= ctx.reduction() <= 0.505
    for name in info["tied"]:  # the stem, every block's second conv, the projection shortcuts
        assert info["after"][name] == before[name], name
    internal = [n for n in before if n.endswith("conv1") and n != "conv1"]
    assert all(info["after"][n] < before[n] for n in internal)  # the block-internal convs carry the pruning


@pytest.mark.parametrize(("preset", "kept"), [
    ("resnet56-A", {"layer1": 14, "layer2": 28, "layer3": 57}),   # res56prune.py, A: 10% in every stage
    ("resnet56-B", {"layer1": 6, "layer2": 22, "layer3": 57}),    # B: 60%, 30%, 10%
])
def test_pfec_resnet56_presets_keep_the_scripts_counts(preset: str, kept: dict) -> None:
    fields, before, info, ctx = _prune("pfec", "resnet56", preset=preset)
    skipped = set(fields["skipped_layers"])
    assert {"layer1.7.conv1", "layer2.0.conv1", "layer3.0.conv1", "layer3.8.conv1"} <= skipped
    for name, n in info["after"].items():
        if name in skipped or name in info["tied"]:
            assert n == before[name], name
        elif name.endswith("conv1") and name != "conv1":
            assert n == kept[name.split(".")[0]], name
    assert fields["target_flops"] is None and fields["target_reached"] is None and fields["preset"] == preset


def test_pfec_vgg16_pruned_a() -> None:
    fields, before, info, _ = _prune("pfec", "vgg16", preset="vgg16-A")
    convs = list(before)
    assert [info["after"][n] for n in convs] == [32, 64, 128, 128, 256, 256, 256, 256, 256, 256, 256, 256, 256]


def test_skip_layers_are_left_alone_and_checked() -> None:
    fields, before, info, _ = _prune("pfec", "resnet20", target_flops=0.3, skip_layers=("layer1.0.conv1",))
    assert info["after"]["layer1.0.conv1"] == before["layer1.0.conv1"] == 16
    with pytest.raises(UserError, match="not a layer pfec prunes"):
        PRUNERS.get("pfec").Config(target_flops=0.3, skip_layers=("layer1.0.conv2",)).validate(
            SimpleNamespace(model="resnet20", epochs=10))
    with pytest.raises(UserError, match="is for resnet56, not resnet20"):
        PRUNERS.get("pfec").Config(preset="resnet56-A").validate(SimpleNamespace(model="resnet20", epochs=10))


# ------------------------------------------------------------------------- rate lists
def test_rate_lists_one_value_per_stage_or_per_group() -> None:
    fields, before, info, _ = _prune("pfec", "resnet20", rates=(0.5, 0.25, 0.0))  # per stage
    assert [info["after"][f"layer{s}.0.conv1"] for s in (1, 2, 3)] == [8, 24, 64]
    fields, before, info, _ = _prune("sfp", "resnet20", rates=(0.25,))  # SFP's single --rate
    assert fields["target_flops"] is None and max(fields["layer_rates"].values()) == 0.25
    n_groups = len(coupled_groups(PrunableNetwork(build_model("resnet20", 10, 3), 32, 3)))
    fields, before, info, _ = _prune("hrank", "resnet20", rates=(0.5,) + (0.0,) * (n_groups - 1), rank_images=4)
    assert set(info["after"][n] for n in before if info["after"][n] != before[n]) == {8}  # only the stem group


@pytest.mark.parametrize(("kwargs", "words"), [
    (dict(rates=(0.1, 0.2)), "--rates has 2 values, but resnet20 takes 1 (every layer), 4 (one per stage"),
    (dict(rates=(0.1,), target_flops=0.3), "give --target-flops or --rates, not both"),
    (dict(rates=(1.0,)), "--rates must be pruned fractions in [0, 1)"),
    (dict(), "needs --target-flops (or hand-set --rates"),
])
def test_rate_errors(kwargs: dict, words: str) -> None:
    with pytest.raises(UserError) as err:
        PRUNERS.get("sfp").Config(**kwargs).validate(SimpleNamespace(model="resnet20", epochs=10))
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("name", "kwargs", "words"), [
    ("slimming", dict(reg=0.0), "--reg must be > 0"),
    ("depgraph", dict(reg=-1e-4), "--reg must be > 0"),
    ("fpgm", dict(norm_share=1.5), "--norm-share must be in [0, 1]"),
    ("taylor", dict(frequency=0), "--frequency must be >= 1"),
    ("hrank", dict(rank_images=0), "--rank-images must be >= 1"),
    ("lamp", dict(iterative_steps=0), "--iterative-steps must be >= 1"),
])
def test_method_setting_errors(name: str, kwargs: dict, words: str) -> None:
    with pytest.raises(UserError) as err:
        PRUNERS.get(name).Config(target_flops=0.3, **kwargs).validate(SimpleNamespace(model="resnet20", epochs=10))
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("args", "words"), [
    (("--pruner", "tp:NoSuchImportance"), "unknown pruner 'tp:NoSuchImportance'; registered:"),
    (("--pruner", "pfec", "--rates", "0.1,0.2"), "--rates has 2 values, but resnet20 takes"),
    (("--pruner", "slimming", "--target-flops", "0.3", "--reg", "0"), "--reg must be > 0"),
])
def test_bad_input_is_one_error_line_before_training(tmp_path, capsys, args: tuple, words: str) -> None:
    out = tmp_path / "run"
    line = one_error(capsys, ["run", *args, "--model", "resnet20", "--epochs", "2", "--out", str(out)])
    assert words in line
    assert not out.exists()  # nothing trained, nothing written


# ------------------------------------------------------------------------- method cards
def test_every_builtin_pruner_names_its_source_and_the_readme_table_is_current() -> None:
    builtin = [n for n in PRUNERS.names() if PRUNERS.get(n).__module__.split(".")[0] in ("baselines", "laasp")]
    for name in builtin:
        card = PRUNERS.get(name).method
        assert card is not None and all(card.as_dict().values()), name
    for name in ("tp:GroupTaylorImportance", "tp:LAMPImportance", "tp:RandomImportance"):
        assert name in PRUNERS
    assert "tp:OBDCImportance" not in PRUNERS
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert method_table(builtin) in readme, "README's method table is stale: paste `python run_bench.py info --methods`"
