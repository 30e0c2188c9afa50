"""Pretrained starts (``--weights``): torchvision state_dicts load exactly, anything else is refused
with one clear error (exit 2) before training, and a pruned run from weights prunes them at once."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from harness.cli import main
from harness.errors import UserError
from harness.models import build_model
from harness.models.pretrained import load_pretrained, read_state_dict, sha256
from tests.helpers import one_error
from tests.test_data import write_tree

TREE = ["--dataset", "imagefolder", "--epochs", "1", "--batch-size", "8", "--loader-workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Three classes of 32 px RGB images: small enough to train ResNet-18 in seconds."""
    return write_tree(tmp_path_factory.mktemp("tree"), ["a", "b", "c"], {"train": 6, "test": 2}, side=32)


def saved(tmp_path: Path, obj, name: str = "w.pth") -> Path:
    torch.save(obj, tmp_path / name)
    return tmp_path / name


def test_torchvision_state_dict_gives_torchvision_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    path = saved(tmp_path, reference.state_dict())
    ours = build_model("resnet18", 5, 3)
    assert load_pretrained(ours, "resnet18", read_state_dict(path, "w"), "w") == {}
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), reference(x))


def test_only_a_classifier_of_another_class_count_is_replaced(tmp_path) -> None:
    reference = torchvision.models.resnet18(weights=None)  # 1000 classes
    ours = build_model("resnet18", 3, 3)
    fresh_fc = ours.fc.weight.detach().clone()
    notes = load_pretrained(ours, "resnet18", reference.state_dict(), "w")
    assert notes == {"classifier": {"file_classes": 1000, "model_classes": 3, "reset": True}}
    assert torch.equal(ours.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert torch.equal(ours.fc.weight, fresh_fc)


def test_wrapped_and_dataparallel_state_dicts_load(tmp_path) -> None:
    state = torchvision.models.mobilenet_v2(weights=None, num_classes=4).state_dict()
    path = saved(tmp_path, {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}})
    loaded = read_state_dict(path, "w")
    assert set(loaded) == set(state)
    load_pretrained(build_model("mobilenet_v2", 4, 3), "mobilenet_v2", loaded, "w")


def test_wrong_architecture_names_the_mismatches_and_the_model_it_fits(tmp_path, tree, capsys) -> None:
    path = saved(tmp_path, torchvision.models.resnet34(weights=None, num_classes=3).state_dict())
    line = one_error(capsys, ["train", "--model", "resnet18", *TREE, "--data-root", str(tree), "--weights", str(path),
                              "--out", str(tmp_path / "o")])
    assert f"--weights {path} does not fit resnet18" in line and "unexpected (layer1.2.conv1.weight" in line
    assert "it fits --model resnet34" in line
    assert not (tmp_path / "o").exists()


def test_shape_mismatch_is_named(tmp_path) -> None:
    state = torchvision.models.resnet18(weights=None, num_classes=3).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    with pytest.raises(UserError, match=r"1 of another shape \(file vs model: layer1.0.conv1.weight "
                                        r"\(32, 64, 3, 3\) vs \(64, 64, 3, 3\)\)"):
        load_pretrained(build_model("resnet18", 3, 3), "resnet18", state, "w")


def test_pickled_module_is_refused(tmp_path, tree, capsys) -> None:
    path = saved(tmp_path, torchvision.models.resnet18(weights=None, num_classes=3))
    line = one_error(capsys, ["train", "--model", "resnet18", *TREE, "--data-root", str(tree), "--weights", str(path)])
    assert "refused" in line and "torchvision.models.resnet.ResNet" in line
    assert "torch.save(model.state_dict(), FILE)" in line


def test_torchvision_weights_absent_from_an_empty_hub_cache(tmp_path, tree, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    line = one_error(capsys, ["train", "--model", "resnet18", *TREE, "--data-root", str(tree), "--weights", "torchvision"])
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert f"expected {expected}" in line and "ResNet18_Weights.IMAGENET1K_V1" in line
    line = one_error(capsys, ["train", "--model", "resnet18", *TREE, "--data-root", str(tree),
                              "--weights", "torchvision:NOPE"])
    assert "torchvision:IMAGENET1K_V1" in line


def test_torchvision_weights_found_in_the_hub_cache(tmp_path, monkeypatch) -> None:
    """The file torchvision would have downloaded, under TORCH_HOME (a stand-in here: no network)."""
    from harness.models.pretrained import load_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    path = saved(tmp_path / "torch" / "hub" / "checkpoints", torchvision.models.mobilenet_v2(weights=None).state_dict(),
                 "mobilenet_v2-7ebf99e0.pth")
    block = load_weights(build_model("mobilenet_v2", 1000, 3), "mobilenet_v2", "torchvision:DEFAULT", 3)
    assert block == {"source": "torchvision:MobileNet_V2_Weights.IMAGENET1K_V2", "sha256": sha256(path)}


def test_cifar_model_is_refused(tmp_path, capsys) -> None:
    path = saved(tmp_path, torchvision.models.resnet18(weights=None, num_classes=10).state_dict())
    line = one_error(capsys, ["train", "--model", "resnet20", "--epochs", "1", "--quiet", "--weights", str(path)])
    assert "resnet20 is a cifar_resnet model; use one of mobilenet_v2, resnet18, resnet34, resnet50" in line


def test_grayscale_data_is_refused(tmp_path, capsys) -> None:
    gray = write_tree(tmp_path / "gray", ["a", "b"], {"train": 2, "test": 1}, side=32, mode="L")
    path = saved(tmp_path, torchvision.models.resnet18(weights=None, num_classes=2).state_dict())
    line = one_error(capsys, ["train", "--model", "resnet18", *TREE, "--data-root", str(gray), "--weights", str(path)])
    assert "3-channel (RGB) images, but the data set has 1 channel" in line


def test_pruned_run_from_weights_prunes_them_at_once(tmp_path, tree) -> None:
    torch.manual_seed(1)
    path = saved(tmp_path, torchvision.models.resnet18(weights=None).state_dict())  # 1000 classes, data 3
    out = tmp_path / "run"
    assert main(["run", "--pruner", "l1_uniform", "--model", "resnet18", *TREE, "--data-root", str(tree),
                 "--weights", str(path), "--target-flops", "0.3", "--out", str(out)]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["weights"]["sha256"] == sha256(path) and record["weights"]["classifier"]["reset"]
    assert not record["weights"]["source"].startswith("/")
    assert record["config"]["pruner_config"]["prune_epoch"] == 0 and record["pre_prune"] is not None
    assert [e["phase"] for e in record["history"]] == ["finetune"]


def test_weights_and_from_checkpoint_are_one_start_too_many(tmp_path) -> None:
    from harness.job.options import job_config_from_options, pruner_config_from_options

    path = saved(tmp_path, {})
    opts = {"model": "resnet18", "pruner": "l1_uniform", "target_flops": 0.3, "weights": str(path),
            "from_checkpoint": str(path)}
    with pytest.raises(UserError, match="--weights and --from-checkpoint both give the starting network; pass one"):
        job_config_from_options(opts, pruner_config_from_options(opts))


def test_sweep_keeps_torchvision_literal_and_resolves_files_beside_the_yaml(tmp_path) -> None:
    from harness.sweep.options import portable_options
    from harness.sweep.plan import plan_grid
    from harness.sweep.space import load_space

    saved(tmp_path, {}, "start.pth")
    space = tmp_path / "space.yaml"
    space.write_text("fixed: {model: resnet18, dataset: imagenet}\ngrid: {weights: [torchvision, start.pth]}\n")
    weights = [t.options["weights"] for t in plan_grid(load_space(space))]
    assert weights == ["torchvision", str(tmp_path / "start.pth")]
    assert portable_options({"weights": "torchvision"}) == {"weights": "torchvision"}
