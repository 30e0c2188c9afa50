"""Soft filter pruning (He et al., IJCAI 2018) and FPGM (He et al., CVPR 2019), as their code does it.

- ``sfp``: at the prune point and at the end of every later epoch, the filters with the
  smallest L2 norm of each layer are set to zero, but stay in the network and keep training
  (no gradient mask), so a zeroed filter can grow back and leave the mask at the next epoch
  end (he-y/soft-filter-pruning, ``Mask.init_mask``/``do_mask``).
- ``fpgm``: the same framework; the filters nearest the layer's geometric median go (the
  smallest sum of Euclidean distances to the other filters, on the raw weights, among those
  the optional L2-norm pre-filter keeps), and the gradients of masked filters are zeroed after
  every backward pass (he-y/filter-pruning-geometric-median, ``get_filter_similar``,
  ``do_grad_mask``).

After the last epoch the masked filters are removed for good (`SoftFilterPruner.on_train_end`).
Both papers train from scratch with the masks from the start, so ``prune_epoch`` defaults to 0
here (not the recipe's) and the first mask comes before the first epoch. Started late instead,
at a lowered learning rate, SFP's regrowth is harmful: a zeroed filter feeds its batch norm a
zero-variance channel, so the next step's gradient on it is scaled by 1/sqrt(eps) (316) and the
filter comes back at full strength (batch norm undoes its scale) in one step, every epoch, in
whatever direction that gradient points; measured on digits (ResNet-20, 6 epochs, 50% FLOPs),
SFP ends at 93.6% top-1 masking from epoch 0 and at 17.2% masking from epoch 2 (lr 0.1 -> 0.01
at epoch 3); FPGM, whose gradient mask stops the regrowth, ends at 94.4% from epoch 2.

**Coupled groups (our decision).** The official code masks every conv on its own, also the
convs whose outputs meet in a residual addition (the stem and every block's last conv). A mask
there zeroes a branch's contribution, but the residual channel stays: it cannot be removed
unless every conv writing to it loses it, so those masks save no real FLOPs (the papers' 52.6%
for ResNet-56 comes from a formula that counts them anyway; docs/official_code_notes.md). Here
a coupled group is one unit, as in every baseline of the harness: channel k of a residual
stage is scored on the concatenation of its filters in all the stage's convs (for a one-conv
group, exactly the paper's score) and masked in all of them, so every masked channel is
removed at the end and the FLOPs target is met as measured by the harness's counter.
`benchmarks/bench_soft_removal_flops.py` measures what the official per-conv masks would
really save.

**What is zeroed.** As in the official code, a mask zeroes the conv filter (weights, and the
bias where a conv has one) and leaves the batch norm after it alone, so a masked channel still
outputs the constant shift of its batch norm while training. Removing the filter at the end
drops that shift too (as the authors' own conversion to a small model does for the convs
inside a block); the final top-1 is measured after the removal, and the last epoch's history
entry holds the masked network's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from baselines.common import (FINISH_TOLERANCE, CoupledGroup, FlopsModel, coupled_groups, group_rows, layer_rates,
                              record_fields, report_reach, solve, step_entry)
from baselines.masks import channel_params, remove_channels, zero_channels
from baselines.rates import RatesConfig, counts_from_rates, rate_scopes
from baselines.uniform import uniform_events
from harness.errors import UserError
from harness.prune.criteria import lowest
from harness.prune.flops import count_cost
from harness.prune.flops import reduction as flops_reduction
from harness.prune.prunable import PrunableNetwork
from harness.prune.pruner import PRUNERS, MethodCard, Pruner, decide


@dataclass(frozen=True)
class SoftConfig(RatesConfig):
    """The FLOPs target (a uniform rate solved for it) or hand-set ``--rates`` (the papers' ``--rate``).
    Masks start before the first epoch (``prune_epoch`` 0, not the recipe's), as the papers train."""

    OWN_DEFAULTS: ClassVar[tuple[str, ...]] = ("prune_epoch",)


class SoftFilterPruner(Pruner):
    """The SFP framework: masks recomputed at the prune point and every later epoch end,
    removed at the end. Subclasses choose the channels (`choose`)."""

    Config = SoftConfig
    criterion = "l2"

    def __init__(self, config: Any):
        super().__init__(config)
        self.counts: list[int] | None = None        # channels masked per group, fixed at the prune point
        self.pruned: list[list[int]] | None = None  # the current mask: root channels per group
        self.trace: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self._structure: tuple[PrunableNetwork, list[CoupledGroup]] | None = None
        self._grad_masks: list[tuple[torch.nn.Parameter, torch.Tensor]] | None = None

    def choose(self, group: CoupledGroup, count: int) -> list[int]:
        """The ``count`` root channels of ``group`` to mask now, from the current weights."""
        raise NotImplementedError

    # ----------------------------------------------------------------- structure and masks
    def structure(self, ctx) -> tuple[PrunableNetwork, list[CoupledGroup]]:
        """The network's groups (traced once per process; masks do not change the structure)."""
        if self._structure is None or self._structure[0].model is not ctx.model:
            net = PrunableNetwork(ctx.model, ctx.data.image_size, ctx.data.in_channels)
            self._structure = (net, coupled_groups(net, self.config.max_prune_rate))
        return self._structure

    def _mask(self, ctx) -> None:
        start = time.perf_counter()
        net, groups = self.structure(ctx)
        before = self.pruned
        self.pruned = decide(ctx, lambda: [self.choose(g, self.counts[g.index]) if self.counts[g.index] else []
                                           for g in groups])  # rank 0's masks on every rank
        zero_channels(groups, self.pruned)
        self._grad_masks = None
        regrown = None if before is None else sum(len(set(b) - set(a)) for a, b in zip(self.pruned, before))
        seconds = time.perf_counter() - start
        ctx.add_time("selection_s", seconds)
        self.trace.append(step_entry(len(self.trace) + 1, self.criterion, sum(self.counts), self.extra["planned"],
                                     seconds, ctx.state.epochs_trained, regrown=regrown))

    def _gradient_masks(self, ctx) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
        if self._grad_masks is None:
            self._grad_masks = channel_params(self.structure(ctx)[1], self.pruned, batch_norm=False)
        return self._grad_masks

    # ----------------------------------------------------------------- lifecycle
    def prune(self, ctx) -> dict[str, Any]:
        cfg = self.config
        net, groups = self.structure(ctx)
        model = FlopsModel(net, groups)
        base = ctx.baseline_cost.flops
        if cfg.rates:
            scopes = rate_scopes(ctx.config.model, len(cfg.rates), [g.root.name for g in groups])
            self.counts = counts_from_rates(cfg.rates, scopes, [g.channels for g in groups], keep_floor=False)
            ratio, skipped = None, []
        else:
            events = uniform_events(groups)
            sol = solve([g for _, g in events], model, (1 - cfg.target_flops) * base, FINISH_TOLERANCE * base)
            self.counts, skipped = sol.counts, sol.skipped
            ratio = events[sol.taken[-1]][0] if sol.taken else 0.0
        self.extra = {"planned": flops_reduction(base, model.flops(self.counts)), "uniform_ratio": ratio,
                      "passed_over": [name for g in skipped for name in groups[g].names],
                      "layer_rates": layer_rates(net, groups, dict(enumerate(self.counts)))}
        self._mask(ctx)  # the first mask, before the first epoch after the prune point
        return self._fields(ctx, reached=None)

    def on_epoch_end(self, ctx) -> None:
        if self.counts is not None:  # from the prune point on
            self._mask(ctx)

    def on_train_end(self, ctx) -> dict[str, Any] | None:
        if self.pruned is None:
            return None
        start = time.perf_counter()
        net, groups = self.structure(ctx)
        remove_channels(net, groups, self.pruned)
        self._structure = None
        ctx.add_time("selection_s", time.perf_counter() - start)
        flops = count_cost(ctx.model, ctx.data.image_size, ctx.data.in_channels).flops
        reduction = flops_reduction(ctx.baseline_cost.flops, flops)
        budget = (1 - (self.config.target_flops or 0.0)) * ctx.baseline_cost.flops
        return self._fields(ctx, report_reach(ctx, self.config, flops, budget, reduction))

    def _fields(self, ctx, reached: bool | None) -> dict[str, Any]:
        x = self.extra
        return record_fields(self.config, reached, self.trace, self.criterion, sum(self.counts), x["layer_rates"],
                             x["passed_over"], uniform_ratio=x["uniform_ratio"], mask_updates=len(self.trace))

    def state_dict(self) -> dict[str, Any] | None:
        if self.counts is None:
            return None
        return {"counts": self.counts, "pruned": self.pruned, "trace": self.trace, "extra": self.extra}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts, self.pruned = list(state["counts"]), [list(p) for p in state["pruned"]]
        self.trace, self.extra = list(state["trace"]), dict(state["extra"])


SFP_CARD = MethodCard(
    paper="He, Kang, Dong, Fu, Yang: Soft Filter Pruning for Accelerating Deep CNNs, IJCAI 2018",
    official_code="he-y/soft-filter-pruning @919c399 (pruning_cifar10_resnet.py, class Mask)",
    faithful="trained from scratch with masks from the start: L2 norm of each filter, lowest int(C x rate) zeroed "
             "before the first epoch and after every epoch, recomputed from the current weights; conv weights only "
             "(batch norm untouched); no gradient mask, so zeroed filters keep training and can come back; removed "
             "after the last epoch",
    adapted="uniform rate solved for the FLOPs target (paper: --rate set by hand; --rates gives it back); a "
            "residual-coupled group is one unit (channel k scored on all its convs' filters and masked in all), "
            "so masks become real FLOPs savings; removal drops the batch-norm shift of removed channels",
    defaults="prune_epoch 0 (the paper's, not the recipe's), masks every epoch (epoch_prune 1); the run's recipe "
             "for the rest (paper: 200 epochs, lr 0.1 x0.2 at 60/120/160, Nesterov, wd 5e-4, batch 128)",
)


@PRUNERS.register("sfp", source=SFP_CARD.paper)
class SFP(SoftFilterPruner):
    method = SFP_CARD
    criterion = "l2"

    def choose(self, group: CoupledGroup, count: int) -> list[int]:
        return lowest(group_rows(group).norm(dim=1), count)


@dataclass(frozen=True)
class FPGMConfig(SoftConfig):
    norm_share: float = 0.0  # share of each layer's pruned filters chosen by L2 norm (paper: rate_norm)

    def validate(self, job=None) -> None:
        super().validate(job)
        if not 0 <= self.norm_share <= 1:
            raise UserError(f"--norm-share must be in [0, 1] (got {self.norm_share}); 0 is the paper's distance-only "
                            "setting (rate_norm 1), 0.75 its rate_norm 0.7 / rate_dist 0.1 setting")


def geometric_median_choice(rows: torch.Tensor, n_norm: int, n_dist: int) -> list[int]:
    """FPGM's ``get_filter_similar``: the ``n_norm`` smallest-L2 rows, then, among the others,
    the ``n_dist`` rows with the smallest sum of Euclidean distances to the others (raw weights)."""
    order = torch.argsort(rows.norm(dim=1), stable=True)
    small, large = order[:n_norm], order[n_norm:]
    chosen = [int(i) for i in small]
    if n_dist:
        sums = torch.cdist(rows[large], rows[large], p=2).abs().sum(dim=0)
        chosen += [int(large[i]) for i in lowest(sums, n_dist)]
    return sorted(chosen)


FPGM_CARD = MethodCard(
    paper="He, Liu, Wang, Hu, Yang: Filter Pruning via Geometric Median, CVPR 2019",
    official_code="he-y/filter-pruning-geometric-median @44fbab4 (pruning_cifar10.py, Mask.get_filter_similar)",
    faithful="SFP framework (from scratch, masks before the first epoch and after every epoch, removed at the end); "
             "optional L2-norm pre-filter, then the smallest sums of Euclidean distances among the norm-kept filters "
             "on the raw weights; gradients of masked filters zeroed after every backward; conv weights only",
    adapted="uniform rate solved for the FLOPs target (paper: rate_norm/rate_dist by hand; --rates and --norm-share "
            "give them back); the norm/distance split is a share of each layer's pruned count; residual-coupled "
            "groups are one unit (as sfp)",
    defaults="prune_epoch 0 (the paper's), norm_share 0 (the paper's rate_norm 1, distance only); masks every epoch; "
             "the run's recipe (paper: 200 epochs, lr 0.1 x0.2 at 60/120/160, Nesterov, wd 5e-4, batch 128)",
)


@PRUNERS.register("fpgm", source=FPGM_CARD.paper)
class FPGM(SoftFilterPruner):
    Config = FPGMConfig
    method = FPGM_CARD
    criterion = "eucl"

    def after_backward(self, ctx) -> None:
        """The official ``do_grad_mask``: masked filters get no gradient (nor weight decay: they are 0)."""
        if self.pruned is None:
            return
        for p, keep in self._gradient_masks(ctx):
            if p.grad is not None:
                p.grad.mul_(keep)

    def choose(self, group: CoupledGroup, count: int) -> list[int]:
        n_norm = int(self.config.norm_share * count + 1e-9)
        return geometric_median_choice(group_rows(group), n_norm, count - n_norm)
