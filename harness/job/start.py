"""Where a run starts from, checked before any training: the state of an interrupted run (read
under the identity rules of older states), a trained checkpoint for three-stage mode, or
pretrained weights (``--weights``)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import nn

from harness.data import DataConfig, Dataset
from harness.errors import UserError
from harness.job.checkpoint import read_checkpoint
from harness.job.config import JobConfig
from harness.job.records import portable_path
from harness.models.pretrained import is_hub, load_weights


def load_start_weights(model: nn.Module, cfg: JobConfig, in_channels: int) -> dict[str, Any]:
    """Load ``--weights`` into the freshly built model; the record's block, its file path portable."""
    block = load_weights(model, cfg.model, cfg.weights, in_channels)
    if not is_hub(cfg.weights):
        block["source"] = portable_path(cfg.weights)
    if "classifier" in block:
        c = block["classifier"]
        print(f"note: --weights has a {c['file_classes']}-class classifier and the data {c['model_classes']} classes: "
              "every other layer is loaded, the classifier starts fresh", file=sys.stderr)
    return block


def read_state(path: Path, cfg: JobConfig) -> dict[str, Any]:
    payload = read_checkpoint(path)
    want = cfg.identity()
    if _upgraded_identity(payload["meta"].get("job"), want) != want:
        raise UserError(f"{path} holds the state of a run with other settings; use another --out, "
                        "or delete the file to start over")
    return payload


def _upgraded_identity(saved: dict[str, Any] | None, current: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """A saved state's identity as today's `JobConfig.identity` computes it: without the DataLoader's
    worker count (``data.workers`` before --loader-workers, ``data.loader_workers`` since); a state
    written before --precision had ``amp`` (False meant fp32) and no deterministic mode; one
    written before --decoder has none (in-memory data ignore it; no streamed run had been made then).
    A pruner config whose identity leaves out settings it does not read (today's, ``current``) drops
    them from the saved one too: the settings that decide they are unread are still compared (an
    exact LAASP run saved with the race's settings, before their defaults changed, resumes)."""
    kept = (current or {}).get("pruner_config")
    if saved and isinstance(kept, dict) and isinstance(saved.get("pruner_config"), dict):
        saved = {**saved, "pruner_config": {k: v for k, v in saved["pruner_config"].items() if k in kept}}
    if saved and isinstance(saved.get("data"), dict):  # the loader's worker count (either name) is no identity
        saved = {**saved, "data": {k: v for k, v in saved["data"].items() if k not in ("workers", "loader_workers")}}
    if saved and isinstance(saved.get("data"), dict) and "decoder" not in saved["data"]:
        saved = {**saved, "data": {**saved["data"], "decoder": DataConfig().decoder}}
    if not saved or "amp" not in saved or "precision" in saved:
        return saved
    rest = {k: v for k, v in saved.items() if k != "amp"}
    return {**rest, "precision": "auto" if saved["amp"] else "fp32", "deterministic": False}


def check_same_network(payload: dict[str, Any], cfg: JobConfig, data: Dataset) -> None:
    got = (payload["model"], payload["num_classes"], payload["in_channels"])
    want = (cfg.model, data.num_classes, data.in_channels)
    if got != want:
        raise UserError(f"--from-checkpoint holds {got[0]} ({got[1]} classes, {got[2]} channels) but the run is "
                        f"{want[0]} on {cfg.data.dataset} ({want[1]} classes, {want[2]} channels); "
                        "pass the matching --model and --dataset")
