"""Safe checkpoints of (possibly pruned) networks: an architecture description plus tensors.

Pruning changes channel counts, so a plain ``state_dict`` no longer fits the registered
model. We store the registered model name, the shape attributes of every Conv2d, BatchNorm2d
and Linear (the only layers torch-pruning resizes) and the tensors. Loading rebuilds the
registered model, resizes those layers, then loads the tensors. Everything in the file is
tensors and plain containers, loaded with ``weights_only=True``: a checkpoint can never run
code. Whole modules are never pickled.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.errors import UserError
from harness.models import build_model

FORMAT = "laasp-bench-checkpoint/1"


def describe_architecture(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Shape attributes of every layer torch-pruning may resize, by module name."""
    arch: dict[str, dict[str, Any]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            arch[name] = {"type": "Conv2d", "in_channels": m.in_channels,
                          "out_channels": m.out_channels, "groups": m.groups}
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):  # 1d: the hidden linear layer of vgg16
            arch[name] = {"type": type(m).__name__, "num_features": m.num_features}
        elif isinstance(m, nn.Linear):
            arch[name] = {"type": "Linear", "in_features": m.in_features, "out_features": m.out_features}
    return arch


def _resize(module: nn.Module, spec: dict[str, Any]) -> None:
    """Give ``module`` the shapes in ``spec``; values come later from the state dict."""
    def blank(t: torch.Tensor | None, shape: tuple[int, ...]):
        if t is None:
            return None
        new = torch.empty(shape, dtype=t.dtype, device=t.device)
        return nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new

    if spec["type"] == "Conv2d":
        module.in_channels, module.out_channels, module.groups = spec["in_channels"], spec["out_channels"], spec["groups"]
        kh, kw = module.kernel_size
        module.weight = blank(module.weight, (module.out_channels, module.in_channels // module.groups, kh, kw))
        if module.bias is not None:
            module.bias = blank(module.bias, (module.out_channels,))
    elif spec["type"] in ("BatchNorm2d", "BatchNorm1d"):
        n = module.num_features = spec["num_features"]
        for attr in ("weight", "bias", "running_mean", "running_var"):
            t = getattr(module, attr)
            if t is not None:
                setattr(module, attr, blank(t, (n,)))
    elif spec["type"] == "Linear":
        module.in_features, module.out_features = spec["in_features"], spec["out_features"]
        module.weight = blank(module.weight, (module.out_features, module.in_features))
        if module.bias is not None:
            module.bias = blank(module.bias, (module.out_features,))


def save_checkpoint(path: str | Path, model: nn.Module, model_name: str, num_classes: int,
                    in_channels: int, meta: dict[str, Any] | None = None,
                    extra_state: dict[str, Any] | None = None) -> Path:
    """Write atomically (tmp file + rename): an interrupted save never leaves a broken file.

    ``meta`` must hold plain JSON-like values; ``extra_state`` may hold tensors (optimizer
    state for resuming).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model": model_name,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "architecture": describe_architecture(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
        "extra_state": extra_state or {},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise UserError(f"checkpoint {path} {what}; pass the checkpoint.pt written by a run's --out folder")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle of whole modules, or a damaged file
        raise UserError(f"cannot load {path} safely ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                        "only checkpoints written by this project are accepted") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a {FORMAT} checkpoint; pass a checkpoint.pt written by this project")
    return payload


def model_from_payload(payload: dict[str, Any]) -> nn.Module:
    model = build_model(payload["model"], payload["num_classes"], payload["in_channels"])
    modules = dict(model.named_modules())
    for name, spec in payload["architecture"].items():
        _resize(modules[name], spec)
    model.load_state_dict(payload["state_dict"])
    return model


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the saved network (pruned shapes included). Returns (model, payload)."""
    payload = read_checkpoint(path)
    return model_from_payload(payload), payload
