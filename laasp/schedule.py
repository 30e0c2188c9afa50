"""LAASP as a registered pruner of the harness: selection steps with recovery training.

Recovery (LAASP.md, `harness.prune.recovery`, shared with the iterative schedule of the one-shot
baselines): whenever the FLOPs reduction has grown by ``recover_flop`` since the last recovery,
train ``recover_epoch`` epochs with a fresh SGD optimizer. These epochs come on top of the
schedule and are counted in the record.

After every step and every recovery epoch the run's state is saved (``ctx.checkpoint``) with
the loop's own progress in ``ctx.pruner_state``, so an interrupted run resumes mid-pruning.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.prune.pruner import PRUNERS, MethodCard, Pruner
from harness.prune.recovery import Recovery
from laasp.config import AUTHORS_SUBSET_POOL, LAASPConfig
from laasp.pruner import LAASP, prune_to_target


@PRUNERS.register("laasp", source="Ghimire et al. 2023, loss-aware automatic selection of pruning criteria")
class LAASPPruner(Pruner):
    Config = LAASPConfig
    method = MethodCard(
        paper="Ghimire, Lee, Kim: Loss-aware automatic selection of structured pruning criteria for deep neural "
              "network acceleration, Image and Vision Computing 2023",
        official_code="the authors' scripts as ../shared/design/LAASP.md records them; laasp/reference.py keeps their "
                      "selection loop (tests: same picks)",
        faithful="each step tries every (layer, criterion) removal on a fixed training subset and applies the one with "
                 "the lowest loss; FLOPs or ratio steps under a per-layer cap; recovery epochs every recover_flop at "
                 "the prune-epoch lr with a fresh optimizer; pool l1, l2, eucl, cos",
        adapted="coupled channels removed together (torch-pruning's dependency graph); candidates scored by masking "
                "instead of copies (same picks); extensions no published LAASP has: approximate selection, data-driven "
                "criteria taylor and hrank in the pool",
        defaults="the authors' recipe per model family (README, Recipes)",
    )

    def prune(self, ctx) -> dict[str, Any]:
        cfg: LAASPConfig = replace(self.config, seed=ctx.config.seed)
        data = ctx.data
        subset_size = min(cfg.subset_size or data.train_size, data.train_size)
        pool = max(1, min(AUTHORS_SUBSET_POOL, data.train_size - 1)) if cfg.subset_policy == "authors" else None
        subset_size = min(subset_size, pool or subset_size)
        subset_x, subset_y = data.loss_subset(subset_size, seed=ctx.config.seed, pool=pool)
        loop = ctx.pruner_state or {"laasp": None, **Recovery.initial_state()}
        pruner = LAASP(ctx.model, cfg, subset_x, subset_y, data.image_size, data.in_channels, state=loop["laasp"],
                       world=ctx.world)
        recovery = Recovery(ctx, cfg, loop)

        def save(entry: dict[str, Any] | None) -> None:
            loop["laasp"] = pruner.state_dict()
            ctx.pruner_state = loop
            ctx.checkpoint(entry)

        def after_step(step) -> None:
            ctx.add_time("selection_s", step.selection_s)
            if step.check_s:
                ctx.add_time("approx_check_s", step.check_s)
            pruner.trace[-1]["epochs_trained"] = ctx.state.epochs_trained  # where the step sits in the curves
            recovery.after_step(step.flops_reduction)
            save({"phase": "prune", "step": step.step, **ctx.cost_fields()})
            recovery.run()

        recovery.run()  # finish a recovery an interruption cut short
        reached = prune_to_target(pruner, after_step)  # logs a warning when the caps make it unreachable
        agreement = [s["approx_agrees"] for s in pruner.trace if s["approx_agrees"] is not None]
        return {
            "target_flops": cfg.target_flops,
            "target_reached": reached,
            "trace": pruner.trace,
            "removed_per_criterion": pruner.removed_per_criterion(),
            "layer_rates": pruner.layer_rates(),
            "recoveries": recovery.count,
            "subset_size": subset_size,
            "selection": cfg.selection,
            "race": cfg.race_settings().describe() if cfg.selection == "approx" or cfg.approx_check else None,
            "approx_agreement": sum(agreement) / len(agreement) if agreement else None,
        }
