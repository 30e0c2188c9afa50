"""Scratch-E and Scratch-B: a pruned run's final architecture trained from random initialisation.

The controls of Liu, Sun, Zhou, Huang and Darrell, *Rethinking the Value of Network Pruning*
(ICLR 2019): if the pruned architecture, freshly initialised and trained on its own, matches
the pruned-and-fine-tuned network, the pruner's value lies in the architecture it found, not
in the weights it kept. The source is another run (its ``record.json``, a sweep's
``records/<trial>.json``, or its ``checkpoint.pt``); the scratch run

- builds the source's model and removes, through the project's pruning machinery
  (`PrunableNetwork`, torch-pruning's dependency graph, coupled layers once), the channels the
  source removed, so every prunable layer has the source's final channel count;
- re-initialises every weight with the model family's own init (`reinit_weights`), seeded by
  the run's seed, as Liu et al. initialise the pruned architecture normally;
- checks the per-layer channel counts and the FLOPs (the one counter) against the source's;
- trains it in the ordinary unpruned schedule for

  * Scratch-E: ``E`` epochs, the epochs the source run trained (``epochs_trained``, plus the
    start checkpoint's for a three-stage run: every epoch its network was trained);
  * Scratch-B: ``B = round(E x FLOPs_unpruned / FLOPs_pruned)`` epochs, rounded half up
    (computed exactly in integers: ``(2 E F_u + F_p) // (2 F_p)``), so the training compute
    equals that of ``E`` epochs of the unpruned network.

  The learning-rate milestones are the recipe's fractions of that epoch count unless
  ``--milestones`` is given.

Training and data options not given default to the source run's (model, dataset, data root,
subsets, lr, momentum, weight decay, gamma, batch size, seed); a model or dataset other than
the source's is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from harness.errors import UserError
from harness.job.groups import group_of, record_field
from harness.job.options import SCRATCH_EPOCH_OPTIONS as EPOCH_OPTIONS, SCRATCH_INHERITED as INHERITED
from harness.job.records import portable_path, resolve_path

BUDGETS = ("E", "B")
RULE = {"E": "E = the source run's epochs_trained (its start checkpoint's included)",
        "B": "B = round_half_up(E x FLOPs_unpruned / FLOPs_pruned), E = the source run's epochs_trained"}
CITATION = "Liu, Sun, Zhou, Huang, Darrell: Rethinking the Value of Network Pruning, ICLR 2019"


@dataclass(frozen=True)
class ScratchSpec:
    """What a scratch run trains: the source's architecture and the epochs its budget gives."""

    budget: str                              # "E" | "B"
    source: str                              # the source file, a portable path
    source_pruner: str
    source_group: str
    source_epochs: int                       # E
    flops_unpruned: int                      # the source's, by the FLOPs counter
    flops_pruned: int
    epochs: int                              # E or B: what this run trains
    target_flops: float | None
    arch_kind: str                           # "layer_rates" (a record) | "channels" (a checkpoint)
    arch: tuple[tuple[str, float], ...]      # per prunable layer: removed fraction, or final channel count

    @property
    def flops_ratio(self) -> float:
        return self.flops_unpruned / self.flops_pruned

    def block(self) -> dict[str, Any]:
        """The record's ``scratch`` block."""
        return {"budget": self.budget, "source": self.source, "source_pruner": self.source_pruner,
                "source_group": self.source_group, "source_epochs": self.source_epochs,
                "flops_ratio": self.flops_ratio, "epochs": self.epochs, "rule": RULE[self.budget],
                "citation": CITATION}

    def targets(self, original: Mapping[str, int]) -> dict[str, int]:
        """Final channel count of every prunable layer, given the unpruned ones (``original``)."""
        values = dict(self.arch)
        if self.arch_kind == "channels":  # every conv's weight: the prunable ones must all be there
            missing = sorted(set(original) - set(values))
            if missing:
                raise UserError(f"--arch-from {resolve_path(self.source)}: no weights for layers "
                                f"{', '.join(missing[:5])}; the source was made with another version of the model")
            return {name: int(values[name]) for name in original}
        unknown = sorted(set(values) - set(original))
        if unknown:
            raise UserError(f"--arch-from {resolve_path(self.source)}: layers {', '.join(unknown[:5])} are not "
                            "prunable layers of this model; the source was made with another version of the model")
        return {name: n - round(float(values.get(name, 0.0)) * n) for name, n in original.items()}


def scratch_epochs(budget: str, source_epochs: int, flops_unpruned: int, flops_pruned: int) -> int:
    """E, or B = round(E x F_u / F_p) rounded half up, in exact integer arithmetic."""
    if budget == "E":
        return source_epochs
    return (2 * source_epochs * flops_unpruned + flops_pruned) // (2 * flops_pruned)


# ------------------------------------------------------------------------- the source
@dataclass(frozen=True)
class Source:
    path: Path
    run: dict[str, Any]                      # the record, or a checkpoint's record summary
    arch_kind: str
    arch: tuple[tuple[str, float], ...]


def read_source(path: str | Path) -> Source:
    """A finished pruned run from its record (JSON) or its checkpoint (`torch.load`, weights only)."""
    path = Path(path).expanduser()
    hint = "pass a pruned run's record.json, a sweep's records/<trial>.json or a run's checkpoint.pt"
    if not path.is_file():
        raise UserError(f"--arch-from {path}: {'is a folder' if path.is_dir() else 'no such file'}; {hint}")
    try:
        run = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError):
        return _checkpoint_source(path, hint)
    if not isinstance(run, dict) or "model" not in run:
        raise UserError(f"--arch-from {path}: JSON but not a run record (no 'model'); {hint}")
    _check_finished_and_pruned(path, run)
    rates = run.get("layer_rates")
    if isinstance(rates, dict) and rates:
        return Source(path, run, "layer_rates", tuple((str(k), float(v)) for k, v in rates.items()))
    checkpoint = _record_checkpoint(path, run)
    if checkpoint is None:
        raise UserError(f"--arch-from {path}: the record has no layer_rates and its checkpoint is not found; pass "
                        "the run's checkpoint.pt")
    return Source(path, run, "channels", _checkpoint_source(checkpoint, hint).arch)


def _checkpoint_source(path: Path, hint: str) -> Source:
    from harness.job.checkpoint import read_checkpoint

    try:
        payload = read_checkpoint(path)
    except UserError as exc:
        raise UserError(f"--arch-from {path}: {exc}; {hint}") from None
    run = (payload.get("meta") or {}).get("record")
    if not isinstance(run, dict):
        raise UserError(f"--arch-from {path}: holds the state of an unfinished run, not a finished run's network; "
                        f"{hint}")
    _check_finished_and_pruned(path, run)
    channels = tuple((name[: -len(".weight")], int(t.shape[0])) for name, t in payload["state_dict"].items()
                     if name.endswith(".weight") and t.dim() == 4)  # conv weights: out x in x kh x kw
    return Source(path, run, "channels", channels)


def _check_finished_and_pruned(path: Path, run: dict[str, Any]) -> None:
    if run.get("status", "ok") != "ok" or not isinstance(run.get("final"), dict):
        raise UserError(f"--arch-from {path}: that run did not finish ({run.get('error') or 'no final metrics'}); "
                        "pass a finished run")
    if isinstance(run.get("scratch"), dict):
        raise UserError(f"--arch-from {path}: that is itself a scratch run; pass its source "
                        f"({run['scratch'].get('source')})")
    if run.get("pruner") is None:
        raise UserError(f"--arch-from {path}: an unpruned run has no pruned architecture; pass a pruned run")
    flops = run.get("flops") or {}
    if not (isinstance(flops.get("before"), int) and isinstance(flops.get("after"), int) and flops["after"] > 0):
        raise UserError(f"--arch-from {path}: the record has no FLOPs before/after; pass a record or checkpoint "
                        "written by this harness")


def _record_checkpoint(path: Path, run: dict[str, Any]) -> Path | None:
    """The record's checkpoint: relative to the run folder, or to a sweep's folder (records/..)."""
    if not run.get("checkpoint"):
        return None
    for base in (path.parent, path.parent.parent):
        candidate = resolve_path(run["checkpoint"], base)
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def source_epochs(run: dict[str, Any]) -> int:
    """Every epoch the source's network was trained: a three-stage run's start checkpoint's too."""
    init = run.get("init") or {}
    return int(run["epochs_trained"]) + int(init.get("epochs_trained") or 0)


# ------------------------------------------------------------------------- the config
def scratch_job_config(options: Mapping[str, Any], source_path: str | Path, budget: str):
    """Options (unset ones None) + a source + E|B -> the scratch run's validated `JobConfig`."""
    from harness.job.options import job_config_from_options

    if budget not in BUDGETS:
        raise UserError(f"--budget must be E (the source's epochs) or B (the unpruned network's compute), "
                        f"got {budget!r}")
    given = [o for o in EPOCH_OPTIONS if options.get(o) is not None]
    if given:
        raise UserError(f"{', '.join('--' + o.replace('_', '-') for o in given)}: a scratch run's epochs are set by "
                        f"--budget ({RULE['E']}; {RULE['B']}); drop {'it' if len(given) == 1 else 'them'}")
    source = read_source(source_path)
    run = source.run
    opts = dict(options)
    model, dataset = run["model"], run.get("dataset") or record_field(run, "config", "data", "dataset")
    for key, theirs in (("model", model), ("dataset", dataset)):
        if opts.get(key) is not None and opts[key] != theirs:
            raise UserError(f"--arch-from {source.path} is a {model} run on {dataset}, but --{key} is {opts[key]}: "
                            f"its architecture exists only for {theirs}; drop --{key} or pass a {opts[key]} run")
    opts["model"] = model
    for key, where in INHERITED.items():
        if opts.get(key) is None:
            value = record_field(run, "config", *where)
            opts[key] = str(resolve_path(value)) if key == "data_root" and value else value
    e = source_epochs(run)
    flops = run["flops"]
    epochs = scratch_epochs(budget, e, flops["before"], flops["after"])
    target = run.get("target_flops", record_field(run, "config", "pruner_config", "target_flops"))
    spec = ScratchSpec(budget=budget, source=portable_path(source.path), source_pruner=run["pruner"],
                       source_group=group_of(run), source_epochs=e, flops_unpruned=flops["before"],
                       flops_pruned=flops["after"], epochs=epochs,
                       target_flops=None if target is None else float(target), arch_kind=source.arch_kind,
                       arch=source.arch)
    return job_config_from_options({**opts, "epochs": epochs}, scratch=spec)



# ------------------------------------------------------------------------- the network
def build_scratch_model(model: nn.Module, spec: ScratchSpec, model_name: str, image_size: int,
                        in_channels: int) -> nn.Module:
    """Shrink the freshly built ``model`` to the source's architecture, then give it fresh weights.

    Which channels go does not matter (every weight is re-initialised after); the last ones of
    each layer are removed, with everything coupled to them, so a coupled layer is cut once.
    """
    from harness.models import reinit_weights
    from harness.prune.flops import count_cost
    from harness.prune.prunable import PrunableNetwork

    shown = resolve_path(spec.source)
    unpruned = count_cost(model, image_size, in_channels).flops
    if unpruned != spec.flops_unpruned:
        raise UserError(f"--arch-from {shown}: the unpruned {model_name} has {unpruned} FLOPs on this data but "
                        f"{spec.flops_unpruned} in the source run (another input size or channel count); use the "
                        "source's dataset")
    net = PrunableNetwork(model, image_size, in_channels)
    targets = spec.targets({layer.name: layer.filters for layer in net.layers})
    for layer in net.layers:
        if layer.filters > targets[layer.name] >= 1:
            net.remove(layer, list(range(targets[layer.name], layer.filters)))
    got = {layer.name: layer.filters for layer in net.layers}
    wrong = [f"{n}: {got[n]} instead of {t}" for n, t in targets.items() if got[n] != t]
    if wrong:
        raise UserError(f"--arch-from {shown}: cannot build its architecture (coupled layers disagree or a count is "
                        f"out of range): {'; '.join(wrong[:4])}")
    flops = count_cost(model, image_size, in_channels).flops
    if flops != spec.flops_pruned:
        raise UserError(f"--arch-from {shown}: the architecture built from its {spec.arch_kind} has {flops} "
                        f"FLOPs, the source run {spec.flops_pruned}; its record does not describe its network: pass "
                        "its checkpoint.pt instead")
    return reinit_weights(model_name, model)
