"""Checkpoints of pruned (shape-changed) networks: architecture + tensors, weights_only loading."""
from __future__ import annotations

import pickle

import pytest
import torch

from harness.job.checkpoint import describe_architecture, load_checkpoint, save_checkpoint
from harness.errors import UserError
from harness.models import build_model
from harness.prune.prunable import PrunableNetwork


@pytest.mark.parametrize("name,size", [("resnet20", 32), ("mobilenet_v2", 32), ("vgg16", 32)])
def test_pruned_checkpoint_round_trip(tmp_path, name, size) -> None:
    torch.manual_seed(0)
    model = build_model(name, 10, 3)
    net = PrunableNetwork(model, size, 3)
    for layer in net.layers[:: max(1, len(net.layers) // 4)]:
        net.remove(layer, [0, 1])
    model.eval()
    x = torch.randn(4, 3, size, size)
    path = save_checkpoint(tmp_path / "ckpt.pt", model, name, 10, 3, meta={"note": "pruned"})
    loaded, payload = load_checkpoint(path)
    loaded.eval()
    assert describe_architecture(loaded) == describe_architecture(model)
    assert payload["meta"] == {"note": "pruned"}
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_whole_module_pickle_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "laasp-bench-checkpoint/1", "model": build_model("resnet20", 10, 3)}, path,
               pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(UserError, match="cannot load"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_vgg16_with_a_narrower_hidden_linear_round_trips(tmp_path) -> None:
    """vgg16's BatchNorm1d is resized with its linear layer, and the checkpoint remembers it."""
    import torch_pruning as tp

    torch.manual_seed(0)
    model = build_model("vgg16", 10, 3).eval()
    net = PrunableNetwork(model, 32, 3)
    net.remove(net.layers[-1], [0, 1, 2])
    net.dg.get_pruning_group(model.classifier[0], tp.prune_linear_out_channels, idxs=list(range(12))).prune()
    assert describe_architecture(model)["classifier.1"] == {"type": "BatchNorm1d", "num_features": 500}
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "ckpt.pt", model, "vgg16", 10, 3))
    loaded.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
