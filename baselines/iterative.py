"""The iterative schedule of the one-shot baselines (``schedule: iterative``, `baselines.schedules`):
LAASP's steps and recovery with the baseline's own fixed criterion and allocation.

A harness control, not a published method. LAASP differs from a one-shot baseline in two ways at
once: it picks each step's (layer, criterion) by the training loss, and it prunes in small steps
with recovery training between them. This schedule keeps the second and drops the first, so
comparing ``l1_uniform@iterative`` with ``l1_uniform`` and with ``laasp`` tells the two apart.

Step k targets a FLOPs reduction of min(target, reduction after step k-1 + step_scale / 100) and
calls the pruner's own `plan` on the network as it is now, with that budget: a uniform pruner
removes a uniform slice (its ratio continues from the filters already gone, of each layer's
original count: `baselines.uniform.uniform_events`), a global one the weakest filters of its
ranking, each re-scored on the current weights. The per-layer cap stays relative to the
original channels (`baselines.common.coupled_groups`). After each step LAASP's recovery rule
(`harness.prune.recovery`, the same code LAASP runs) decides whether to train recovery epochs.

Each step lands within `baselines.common.FINISH_TOLERANCE` above its target, as a one-shot plan
does, so a step removes between step_scale and step_scale + 0.5 points. After every step and
every recovery epoch the run's state is saved with this loop's progress in ``ctx.pruner_state``
(trace, original channel counts, the scores' random stream, the recovery bookkeeping), so an
interrupted run resumes mid-pruning exactly.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from baselines.common import counted_flops, record_fields, report_reach, step_entry
from baselines.schedules import SCHEDULES
from harness.prune.flops import count_cost
from harness.prune.flops import reduction as flops_reduction
from harness.prune.prunable import PrunableNetwork
from harness.prune.recovery import Recovery


@SCHEDULES.register("iterative")
def prune_iteratively(pruner, ctx) -> dict[str, Any]:
    """Run ``pruner`` (a `baselines.common.OneShotPruner`) on the iterative schedule; its record fields."""
    cfg = pruner.config
    state = ctx.pruner_state or {"trace": [], "original_filters": None, "generator": None, "extra": {},
                                 "passed_over": [], **Recovery.initial_state()}
    net = PrunableNetwork(ctx.model, ctx.data.image_size, ctx.data.in_channels)
    if state["original_filters"] is None:
        state["original_filters"] = {layer.name: layer.original_filters for layer in net.layers}
    for layer in net.layers:  # a resumed network was traced already pruned
        layer.original_filters = state["original_filters"][layer.name]
    generator = torch.Generator().manual_seed(ctx.config.seed)  # the one-shot plan's stream, carried on
    if state["generator"] is not None:
        generator.set_state(state["generator"])
    recovery = Recovery(ctx, cfg, state)
    baseline = ctx.baseline_cost.flops
    budget = (1.0 - cfg.target_flops) * baseline
    trace = state["trace"]

    recovery.run()  # finish a recovery an interruption cut short
    flops = count_cost(ctx.model, ctx.data.image_size, ctx.data.in_channels).flops
    while flops > budget + 1e-6:
        start = time.perf_counter()
        step_target = min(cfg.target_flops, flops_reduction(baseline, flops) + cfg.step_scale / 100)
        plan, groups = pruner.remove_planned(ctx, net, (1.0 - step_target) * baseline, generator)
        selection_s = time.perf_counter() - start
        removed = sum(len(v) for v in plan.removed.values())
        if removed == 0:  # every group at its cap: the target is out of reach (report_reach says so)
            break
        ctx.add_time("selection_s", selection_s)
        flops = counted_flops(ctx, plan, type(pruner).__name__)
        reduction = flops_reduction(baseline, flops)
        # where the step sits in the curves, as in LAASP's trace
        trace.append(step_entry(len(trace) + 1, plan.criterion, removed, reduction, selection_s,
                                ctx.state.epochs_trained, step_target=step_target))
        state["extra"] = plan.extra
        state["passed_over"] = [name for g in plan.passed_over for name in groups[g].names]
        state["generator"] = generator.get_state()
        recovery.after_step(reduction)
        ctx.pruner_state = state
        ctx.checkpoint({"phase": "prune", "step": len(trace), **ctx.cost_fields()})
        recovery.run()

    reached = report_reach(ctx, cfg, flops, budget, flops_reduction(baseline, flops))
    criterion = trace[-1]["criterion"] if trace else pruner.criterion
    rates = {layer.name: layer.removed / layer.original_filters for layer in net.layers}
    fields = record_fields(cfg, reached, trace, criterion, sum(s["removed"] for s in trace), rates,
                           state["passed_over"], **state["extra"])
    fields["recoveries"] = recovery.count
    return fields
