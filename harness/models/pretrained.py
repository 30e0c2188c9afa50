"""Pretrained starts (``--weights``): a torchvision-format state_dict loaded into an ImageNet model.

Two sources: a file (``--weights FILE``), or torchvision's own ImageNet weights as they sit in
the torch hub cache (``--weights torchvision``, or ``torchvision:<enum member>`` for another
member than ``IMAGENET1K_V1``). Nothing is ever downloaded: a missing hub file is an error that
names where it must be. Every file is read with ``torch.load(weights_only=True)``, so a file
holding a pickled module (which could run code when unpickled) is refused, not loaded.

Only the torchvision ImageNet models accept weights, on 3-channel data. The one difference
allowed between the file and the model is the classifier's class count (1000 ImageNet classes
against a 10-class data set): then every other tensor is loaded and the classifier keeps its
fresh initialisation, which the run prints and records (transfer learning). Any other mismatch
is an error naming the first differences and which model the file fits, if any.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from harness.errors import UserError
from harness.models.registry import MODELS, build_model, classifier_modules

HUB = "torchvision"
HUB_DEFAULT_MEMBER = "IMAGENET1K_V1"  # the weights the pruning literature's ImageNet baselines start from
FAMILY = "imagenet"
SHOWN = 3  # mismatches named in an error


def is_hub(spec: str | None) -> bool:
    """Whether ``--weights`` names torchvision's cached weights rather than a file."""
    return spec is not None and (spec == HUB or spec.startswith(HUB + ":"))


@dataclass(frozen=True)
class WeightsSource:
    path: Path
    source: str  # "torchvision:ResNet18_Weights.IMAGENET1K_V1", or the file as given


def resolve_weights(spec: str, model_name: str) -> WeightsSource:
    """Where ``--weights spec`` for ``model_name`` is on this machine; `UserError` if it is not there."""
    family = MODELS.meta(model_name)["family"]
    if family != FAMILY:
        fits = ", ".join(n for n in MODELS.names() if MODELS.meta(n)["family"] == FAMILY)
        raise UserError(f"--weights loads torchvision ImageNet weights, but {model_name} is a {family} model; "
                        f"use one of {fits}, or omit --weights to train from scratch")
    if is_hub(spec):
        return _hub_file(spec, model_name)
    path = Path(spec).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "no such file"
        raise UserError(f"--weights {spec}: {what}; pass a state_dict file (torch.save(model.state_dict(), FILE)) "
                        f"or --weights {HUB}")
    return WeightsSource(path, spec)


def _hub_file(spec: str, model_name: str) -> WeightsSource:
    """The torch hub cache file of torchvision's weights for ``model_name`` (never downloaded)."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(model_name)
    member = spec.partition(":")[2] or HUB_DEFAULT_MEMBER
    try:
        weights = enum[member]
    except KeyError:
        raise UserError(f"--weights {spec}: {enum.__name__} has no {member}; use one of "
                        f"{', '.join(f'{HUB}:{m.name}' for m in enum)} (or {HUB}:DEFAULT)") from None
    name = os.path.basename(weights.url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        raise UserError(f"--weights {spec}: torchvision's {enum.__name__}.{weights.name} is not in the torch hub "
                        f"cache: expected {path} (nothing is downloaded here); copy {name} there from a machine "
                        f"that has it ({weights.url}), set TORCH_HOME to a folder holding hub/checkpoints/{name}, "
                        f"or pass the file itself with --weights FILE")
    return WeightsSource(path, f"{HUB}:{enum.__name__}.{weights.name}")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path, what: str) -> dict[str, Tensor]:
    """A state_dict from ``path``, read without unpickling code; `UserError` for anything else."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message suggests weights_only=False; name only the class that was refused
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        held = f" ({found.group(1)})" if found else ""
        raise UserError(f"{what}: refused: the file holds pickled Python objects{held}, not only tensors (e.g. a "
                        "whole nn.Module saved with torch.save(model)), and unpickling them could run code; save "
                        "the weights instead: torch.save(model.state_dict(), FILE)") from None
    except Exception as exc:  # a damaged or non-torch file
        raise UserError(f"{what}: not a readable torch file ({type(exc).__name__}: {_first_line(exc)}); pass a "
                        "state_dict saved with torch.save(model.state_dict(), FILE)") from None
    return _unwrap(payload, what)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _unwrap(payload: Any, what: str) -> dict[str, Tensor]:
    if isinstance(payload, Mapping) and isinstance(payload.get("format"), str) and "architecture" in payload:
        raise UserError(f"{what} is a checkpoint of this project, not a torchvision state_dict; "
                        "start from it with --from-checkpoint instead")
    # training scripts often save {"state_dict": ...} or {"model": ...}, and DataParallel prefixes "module."
    for key in ("state_dict", "model"):
        if isinstance(payload, Mapping) and isinstance(payload.get(key), Mapping):
            payload = payload[key]
    if not isinstance(payload, Mapping) or not payload or not all(isinstance(v, Tensor) for v in payload.values()):
        raise UserError(f"{what} does not hold a state_dict (a mapping of names to tensors); save one with "
                        "torch.save(model.state_dict(), FILE)")
    if all(k.startswith("module.") for k in payload):
        payload = {k[len("module."):]: v for k, v in payload.items()}
    return dict(payload)


def load_pretrained(model: nn.Module, model_name: str, state: Mapping[str, Tensor], what: str) -> dict[str, Any]:
    """Copy ``state`` into ``model`` in place; returns what the record notes about it.

    A class-count difference in the classifier alone keeps the model's fresh classifier.
    """
    own = model.state_dict()
    classifier = _classifier_keys(model)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or [k for k in shapes if k not in classifier]:
        raise UserError(_mismatch(model_name, what, state, missing, unexpected, shapes, own))
    if shapes:  # only the classifier differs: transfer learning onto another class count
        keep = {k: v for k, v in state.items() if k not in classifier}
        model.load_state_dict({**own, **keep})
        weight = next(k for k in classifier if k.endswith("weight"))
        return {"classifier": {"file_classes": int(state[weight].shape[0]), "model_classes": int(own[weight].shape[0]),
                               "reset": True}}
    model.load_state_dict(dict(state))
    return {}


def _classifier_keys(model: nn.Module) -> set[str]:
    names = {id(m): n for n, m in model.named_modules()}
    return {f"{names[id(m)]}.{p}" for m in classifier_modules(model) for p, _ in m.named_parameters()}


def _mismatch(model_name: str, what: str, state: Mapping[str, Tensor], missing: list[str], unexpected: list[str],
              shapes: list[str], own: Mapping[str, Tensor]) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({', '.join(missing[:SHOWN])}{', ...' if len(missing) > SHOWN else ''})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:SHOWN])}"
                     f"{', ...' if len(unexpected) > SHOWN else ''})")
    if shapes:
        shown = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes[:SHOWN])
        parts.append(f"{len(shapes)} of another shape (file vs model: {shown}{', ...' if len(shapes) > SHOWN else ''})")
    fits = _models_fitting(state)
    fix = (f"it fits --model {' or '.join(fits)}" if fits and model_name not in fits else
           "pass a state_dict of the same torchvision architecture (3-channel input)")
    return f"{what} does not fit {model_name}: {'; '.join(parts)}; {fix}"


def _models_fitting(state: Mapping[str, Tensor]) -> list[str]:
    """The ImageNet models whose parameter names and shapes (classifier aside) the file has."""
    fits = []
    for name in MODELS.names():
        if MODELS.meta(name)["family"] != FAMILY:
            continue
        with torch.device("meta"):  # shapes only: no memory, no init cost
            model = build_model(name, 1000, 3)
        own, classifier = model.state_dict(), _classifier_keys(model)
        if set(own) == set(state) and all(k in classifier or own[k].shape == state[k].shape for k in own):
            fits.append(name)
    return fits


def load_weights(model: nn.Module, model_name: str, spec: str, in_channels: int) -> dict[str, Any]:
    """Resolve, hash and load ``--weights spec`` into ``model``; the record's ``weights`` block."""
    source = resolve_weights(spec, model_name)
    if in_channels != 3:
        raise UserError(f"--weights: ImageNet weights read 3-channel (RGB) images, but the data set has "
                        f"{in_channels} channel(s); use an RGB data set or omit --weights")
    what = f"--weights {spec}" if is_hub(spec) else f"--weights {source.path}"
    digest = sha256(source.path)
    notes = load_pretrained(model, model_name, read_state_dict(source.path, what), what)
    return {"source": source.source, "sha256": digest, **notes}
