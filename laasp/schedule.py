"""LAASP as a registered pruner of the harness: selection steps with recovery training.

Recovery (LAASP.md): whenever the FLOPs reduction has grown by ``recover_flop`` since the
last recovery, train ``recover_epoch`` epochs at the learning rate of ``prune_epoch`` with a
fresh SGD optimizer. These epochs come on top of the schedule and are counted in the record.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from harness.pruners import PRUNERS, Pruner
from laasp.config import LAASPConfig
from laasp.pruner import LAASP


@PRUNERS.register("laasp", source="Ghimire et al. 2023, loss-aware automatic selection of pruning criteria")
class LAASPPruner(Pruner):
    Config = LAASPConfig

    def prune(self, ctx) -> dict[str, Any]:
        cfg: LAASPConfig = replace(self.config, seed=ctx.config.seed)
        data = ctx.data
        subset_size = min(cfg.subset_size or data.train_size, data.train_size)
        subset_x, subset_y = data.loss_subset(subset_size, seed=ctx.config.seed)
        pruner = LAASP(ctx.model, cfg, subset_x, subset_y, data.image_size, data.in_channels)
        recover_lr = ctx.config.optim.lr_at(cfg.prune_epoch)
        last_recovery = 0.0
        recoveries = 0
        select_s = 0.0
        reached = True
        while not pruner.done():
            start = time.perf_counter()
            step = pruner.step()
            select_s += time.perf_counter() - start
            if step is None:
                reached = False
                break
            if ctx.report is not None:
                ctx.report({"phase": "prune", "step": step.step, **ctx.cost_fields()})
            if cfg.recover_epoch > 0 and step.flops_reduction - last_recovery >= cfg.recover_flop - 1e-12:
                ctx.train([cfg.prune_epoch] * cfg.recover_epoch, "recover", fixed_lr=recover_lr,
                          fresh_optimizer=True)
                last_recovery = step.flops_reduction
                recoveries += 1
        ctx.add_time("selection_s", select_s)
        reduction = pruner.reduction()
        if not reached:
            print(f"laasp: target FLOPs reduction {cfg.target_flops:.3f} is unreachable under the per-layer cap "
                  f"{cfg.max_prune_rate}: stopped at {reduction:.3f}")
        agreement = [s["approx_agrees"] for s in pruner.trace if s["approx_agrees"] is not None]
        return {
            "target_flops": cfg.target_flops,
            "target_reached": reached,
            "trace": pruner.trace,
            "removed_per_criterion": pruner.removed_per_criterion(),
            "layer_rates": pruner.layer_rates(),
            "recoveries": recoveries,
            "subset_size": subset_size,
            "selection": cfg.selection,
            "approx_agreement": sum(agreement) / len(agreement) if agreement else None,
        }
