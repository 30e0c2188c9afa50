"""A minimal pruner plugin: ``python run_bench.py run --plugin examples/my_pruner.py --pruner widest_l2 ...``

Each step removes the 10% lowest-L2 filters of the widest prunable layer, until the FLOPs
target is met. It shows the whole contract: a frozen ``Config`` dataclass whose fields are
filled from the flags of the same name (unset ones from the model family's recipe), a
``validate`` that raises `UserError`, and ``prune(ctx)`` that removes filters from ``ctx.model``
and returns the standard record fields.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.api import CRITERIA, PRUNERS, CriterionInput, PrunableNetwork, Pruner, PruneSchedule, UserError, lowest


@dataclass(frozen=True)
class WidestL2Config(PruneSchedule):
    """target_flops, prune_epoch, max_prune_rate and their validation come from PruneSchedule.
    Fields of your own need defaults; check them in ``validate`` (a one-line UserError)."""

    step_fraction: float = 0.1   # share of the widest layer's filters removed per step

    def validate(self, job=None) -> None:
        super().validate(job)
        if not 0 < self.step_fraction < 1:
            raise UserError(f"step_fraction must be in (0, 1) (got {self.step_fraction})")


@PRUNERS.register("widest_l2", source="example plugin: 10% lowest-L2 filters of the widest layer per step")
class WidestL2(Pruner):
    Config = WidestL2Config

    def prune(self, ctx) -> dict:
        cfg = self.config
        net = PrunableNetwork(ctx.model, ctx.data.image_size, ctx.data.in_channels)
        generator = torch.Generator().manual_seed(ctx.config.seed)
        trace = []

        def keeps(layer):  # filters the layer must keep under the cap (always >= 1)
            return max(1, layer.original_filters - int(cfg.max_prune_rate * layer.original_filters))

        while ctx.cost_fields()["flops_reduction"] < cfg.target_flops:
            open_layers = [layer for layer in net.layers if layer.filters > keeps(layer)]
            if not open_layers:
                break
            layer = max(open_layers, key=lambda l: l.filters)
            n = min(max(1, round(cfg.step_fraction * layer.filters)), layer.filters - keeps(layer))
            scores = CRITERIA.get("l2")(CriterionInput(layer.module, layer.bn, generator))
            net.remove(layer, lowest(scores, n))  # also removes every coupled channel
            trace.append({"step": len(trace) + 1, "layer": layer.name, "criterion": "l2", "removed": n,
                          "loss": None, "runner_up_loss": None,
                          "flops_reduction": ctx.cost_fields()["flops_reduction"]})
        reached = ctx.cost_fields()["flops_reduction"] >= cfg.target_flops
        return {
            "target_flops": cfg.target_flops,
            "target_reached": reached,
            "trace": trace,
            "removed_per_criterion": {"l2": sum(s["removed"] for s in trace)},
            "layer_rates": {l.name: l.removed / l.original_filters for l in net.layers},
        }
