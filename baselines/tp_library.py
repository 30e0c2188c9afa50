"""Pruning through torch-pruning's own pruners to the harness's FLOPs target, as its benchmark does.

torch-pruning's ``reproduce/main.py`` (``progressive_pruning``) builds a pruner with
``pruning_ratio=1.0, iterative_steps=400`` and calls ``pruner.step()`` until the speed-up is
reached, re-scoring after every step. `prune_progressively` does the same with the harness's
FLOPs counter (conv and linear MACs) and one change at the very end: the last step usually
overshoots (one step of a uniform ratio can cut a channel from many groups at once), so only
as much of its selection is applied as the target needs: its channels, ranked the way the step
ranked them (global: the importance, which the library normalises per group; uniform: how far
each is into its group's quota), are taken in order until the budget is met
(`baselines.common.solve`), which lands every zoo model within 0.5 pt above the target.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch_pruning as tp
from torch import nn

from baselines.common import FINISH_TOLERANCE, FlopsModel, coupled_groups, record_fields, report_reach, solve, step_entry
from harness.errors import UserError
from harness.prune.flops import count_cost
from harness.prune.flops import reduction as flops_reduction
from harness.prune.prunable import PrunableNetwork, kept_modes
from harness.prune.pruner import decide


def example_input(ctx) -> torch.Tensor:
    device = next(ctx.model.parameters()).device
    return torch.zeros(1, ctx.data.in_channels, ctx.data.image_size, ctx.data.image_size, device=device)


def build_pruner(cls: type, ctx, importance: Any, global_pruning: bool, iterative_steps: int, max_prune_rate: float,
                 **kwargs: Any) -> Any:
    """A torch-pruning pruner over every prunable conv. Every linear layer's outputs are left alone:
    the classifier's are the logits, and a hidden linear (the authors' VGG-16 has 512-512 + BN1d)
    is no filter; their inputs still shrink with the convs that feed them."""
    with torch.enable_grad(), kept_modes(ctx.model):  # the library's tracing leaves eval mode on
        return cls(ctx.model, example_input(ctx), importance=importance, global_pruning=global_pruning,
                   pruning_ratio=1.0, iterative_steps=iterative_steps, max_pruning_ratio=max_prune_rate,
                   ignored_layers=[m for m in ctx.model.modules() if isinstance(m, nn.Linear)], **kwargs)


def _member_lookup(groups) -> dict[nn.Module, tuple[int, dict[int, int]]]:
    """Conv module -> (our group index, its filter index -> root channel)."""
    lookup = {}
    for g in groups:
        for layer, idxs in g.members:
            lookup[layer.module] = (g.index, {int(i): k for k, i in enumerate(idxs)})
    return lookup


def prune_progressively(pruner: Any, ctx, budget: float, before_step: Callable[[], None] | None = None) -> dict:
    """``pruner.step()`` until the FLOPs are <= ``budget``, the last step only in part.

    Returns ``{"steps", "landing_channels"}`` (steps taken, channels of the partly applied
    last step); the network is pruned in place.
    """
    net = PrunableNetwork(ctx.model, ctx.data.image_size, ctx.data.in_channels)
    tolerance = FINISH_TOLERANCE * ctx.baseline_cost.flops
    flops = count_cost(ctx.model, ctx.data.image_size, ctx.data.in_channels).flops
    steps, landing = 0, None
    while flops > budget and pruner.current_step < pruner.iterative_steps:
        if before_step is not None:
            before_step()
        # the step's selection, scored on the current weights (the groups share no channels)
        selection = [(g[0].dep.target.module, g[0].dep.handler, [int(i) for i in g[0].idxs])
                     for g in pruner.step(interactive=True)]
        picked = decide(ctx, lambda: [idxs for _, _, idxs in selection])  # rank 0's channels on every rank
        selection = [(module, fn, idxs) for (module, fn, _), idxs in zip(selection, picked, strict=True)]
        steps += 1
        groups = coupled_groups(net)
        model = FlopsModel(net, groups)
        lookup = _member_lookup(groups)
        counts = [0] * len(groups)
        for module, _, idxs in selection:
            if module not in lookup:
                raise UserError(f"torch-pruning selected {type(module).__name__} channels outside the prunable convs")
            counts[lookup[module][0]] += len(idxs)
        if model.flops(counts) > budget:
            for module, fn, idxs in selection:
                pruner.DG.get_pruning_group(module, fn, idxs).prune()
            flops = model.flops(counts)
            continue
        landing = _land(ctx, pruner, selection, groups, model, lookup, budget, tolerance)
        break
    return {"steps": steps, "landing_channels": landing}


def _land(ctx, pruner, selection, groups, model: FlopsModel, lookup, budget: float, tolerance: float) -> int:
    """Apply the first part of the last step's selection, in its own ranking, that meets the budget."""
    entries = []  # (rank key, our group, tp root module, pruning fn, channel)
    for module, fn, idxs in selection:
        full = pruner.DG.get_pruning_group(module, fn, list(range(pruner.DG.get_out_channels(module))))
        imp = pruner.estimate_importance(full).detach().double().cpu()
        ordered = sorted(idxs, key=lambda i: (float(imp[i]), i))
        g = lookup[module][0]
        for j, i in enumerate(ordered):
            key = float(imp[i]) if pruner.global_pruning else (j + 0.5) / groups[g].channels
            entries.append((key, g, id(module), i, module, fn))
    entries.sort(key=lambda e: e[:4])
    sol = solve([e[1] for e in entries], model, budget, tolerance)
    chosen: dict[nn.Module, tuple[Any, list[int]]] = {}
    taken = [0] * len(groups)
    for _, g, _, i, module, fn in entries:  # per group, the first counts[g] of its ranked channels
        if taken[g] < sol.counts[g]:
            taken[g] += 1
            chosen.setdefault(module, (fn, []))[1].append(i)
    # ties in the ranking fall back to id(module), which differs between processes: rank 0's choice
    position = {module: j for j, (module, _, _) in enumerate(selection)}
    picks = decide(ctx, lambda: sorted((position[m], sorted(idxs)) for m, (_, idxs) in chosen.items()))
    for j, idxs in picks:
        module, fn, _ = selection[j]
        pruner.DG.get_pruning_group(module, fn, idxs).prune()
    return sum(len(idxs) for _, idxs in picks)


def prune_with_library(pruner: Any, ctx, config: Any, criterion: str, before_step: Callable[[], None] | None = None,
                       **extra: Any) -> dict[str, Any]:
    """`prune_progressively` to ``config.target_flops``, timed; returns the record fields."""
    start = time.perf_counter()
    before = filters_now(ctx)
    progress = prune_progressively(pruner, ctx, (1 - config.target_flops) * ctx.baseline_cost.flops, before_step)
    return library_fields(ctx, config, criterion, before, time.perf_counter() - start, progress, **extra)


def library_fields(ctx, cfg, criterion: str, net_before: dict[str, int], seconds: float, progress: dict,
                   **extra: Any) -> dict[str, Any]:
    """The record fields of a torch-pruning run (one trace entry: the whole progressive pruning)."""
    flops = count_cost(ctx.model, ctx.data.image_size, ctx.data.in_channels).flops
    reduction = flops_reduction(ctx.baseline_cost.flops, flops)
    reached = report_reach(ctx, cfg, flops, (1 - cfg.target_flops) * ctx.baseline_cost.flops, reduction)
    after = filters_now(ctx)
    rates = {name: 1 - after.get(name, c) / c for name, c in net_before.items()}
    removed = sum(c - after.get(name, c) for name, c in net_before.items())
    trace = [step_entry(1, criterion, removed, reduction, seconds, ctx.state.epochs_trained, tp_steps=progress["steps"])]
    ctx.add_time("selection_s", seconds)
    ctx.report({"phase": "prune", "step": 1, **ctx.cost_fields()})
    return record_fields(cfg, reached, trace, criterion, removed, rates, [], tp_steps=progress["steps"],
                         landing_channels=progress["landing_channels"], flops_counter_for_target="harness (conv+linear "
                         "MACs), not torch-pruning's count_ops_and_params", **extra)


def filters_now(ctx) -> dict[str, int]:
    return {layer.name: layer.filters
            for layer in PrunableNetwork(ctx.model, ctx.data.image_size, ctx.data.in_channels).layers}


def importance_classes() -> dict[str, type]:
    """Every importance class torch-pruning defines, by name (``tp:<name>``)."""
    mod = tp.pruner.importance
    return {name: cls for name, cls in sorted(vars(mod).items())
            if isinstance(cls, type) and issubclass(cls, mod.Importance) and cls is not mod.Importance}
