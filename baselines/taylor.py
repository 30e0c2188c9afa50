"""``taylor``: Molchanov, Mallya, Tyree, Frosio, Kautz, "Importance Estimation for Neural Network
Pruning" (CVPR 2019), as NVlabs/Taylor_pruning (``pruning_engine.py``, method 22) does it.

From ``prune_epoch`` on, during training: after every backward pass, each channel's criterion
``(gamma dL/dgamma + beta dL/dbeta)^2`` on the batch norm after its conv (exactly the code's
gate criterion ``(sum y dL/dy)^2``, `harness.prune.probe`) is added to an accumulator. Every
``frequency`` minibatches the mean since the last pruning is blended into a running average
(``0.9 x previous + 0.1 x new``; the first time, the new mean), all channels are ranked
globally on that raw value (no per-layer normalisation, as in every released config) and the
lowest are pruned: their batch norm's scale and shift are set to zero and kept there (the
code's gate := 0), so the channel outputs exactly zero. A pruned channel scores 0 and stays
pruned. After ``prune_iterations`` iterations the target is reached and training continues as
fine-tuning; after the last epoch the gated channels are removed for good (exact: they output 0).

Adapted: the code prunes a fixed number of neurons per iteration (100 every 30 minibatches,
e.g. 32 iterations for ResNet-50 "prune72"); here iteration i of n prunes until the FLOPs
reduction reaches i/n of the target (the harness's counter), so the last lands on it. A
residual group (channels shared by several batch norms through the additions) counts as one
channel whose criterion is the square of the summed terms divided by the number of batch norms,
as the code's per-stage skip gates divide by the number of blocks. A per-layer cap keeps every
layer alive (the code has none). If training ends before the last iteration (too few
minibatches after ``prune_epoch``), the remaining pruning happens at the end, from the
criterion on ``frequency`` more minibatches of training images, and the record says so
(``finished_in_training: false``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from baselines.common import (FINISH_TOLERANCE, CoupledGroup, FlopsModel, coupled_groups, layer_rates,
                              ranked_events, record_fields, report_reach, solve, step_entry)
from baselines.masks import channel_params, remove_channels, zero_channels
from harness.errors import UserError
from harness.prune.criteria import lowest
from harness.prune.flops import count_cost
from harness.prune.flops import reduction as flops_reduction
from harness.prune.prunable import PrunableNetwork
from harness.prune.probe import bn_taylor_term
from harness.prune.pruner import PRUNERS, MethodCard, Pruner, PruneSchedule, decide

MOMENTUM = 0.9  # pruning_momentum of every released config


@dataclass(frozen=True)
class TaylorConfig(PruneSchedule):
    frequency: int = 30         # minibatches between pruning iterations (every released config)
    prune_iterations: int = 32  # iterations to reach the target (ResNet-50 "prune72": 32 x 100 neurons)

    def validate(self, job=None) -> None:
        super().validate(job)
        if self.frequency < 1:
            raise UserError(f"--frequency must be >= 1 minibatch (got {self.frequency})")
        if self.prune_iterations < 1:
            raise UserError(f"--prune-iterations must be >= 1 (got {self.prune_iterations})")
        self._check_iterations_fit(job)

    def _check_iterations_fit(self, job) -> None:
        """Refuse a run too short for its pruning iterations: the rest would be pruned after the
        last epoch with no fine-tuning (a collapse, not the method; `Taylor.on_train_end`).
        Checked on the run's own epochs; an epoch budget's extra epochs only add minibatches."""
        images = None if job is None else job.data.train_images()
        if images is None:
            return
        per_epoch = math.ceil(images / job.optim.batch_size)
        epochs = max(job.epochs, job.epoch_budget or 0) - self.prune_epoch
        have, need = per_epoch * epochs, self.frequency * self.prune_iterations
        if have < need:
            fit = max(1, have // self.prune_iterations)
            raise UserError(f"taylor prunes {self.prune_iterations} times every {self.frequency} minibatches "
                            f"({need} minibatches) but this run trains {have} after --prune-epoch {self.prune_epoch} "
                            f"({epochs} epochs of {per_epoch}); pass --frequency {fit} (or fewer "
                            "--prune-iterations, or more --epochs)")


def group_taylor(group: CoupledGroup) -> torch.Tensor:
    """One minibatch's criterion per root channel: the group's summed BN terms, squared, divided
    by the number of batch norms (from ``.grad``, right after backward)."""
    terms = [bn_taylor_term(layer.bn)[idxs] for layer, idxs in group.members
             if layer.bn is not None and layer.bn.weight is not None]
    if not terms:
        raise UserError(f"taylor needs an affine batch norm after every prunable conv; {group.root.name} has none")
    return torch.stack(terms).sum(dim=0) ** 2 / len(terms)


TAYLOR_CARD = MethodCard(
    paper="Molchanov, Mallya, Tyree, Frosio, Kautz: Importance Estimation for Neural Network Pruning, CVPR 2019",
    official_code="NVlabs/Taylor_pruning @4b70120 (pruning_engine.py, method 22 Taylor_gate)",
    faithful="(gamma dL/dgamma + beta dL/dbeta)^2 per channel and minibatch (= the gate criterion (sum y dL/dy)^2), "
             "summed over minibatches, mean blended 0.9/0.1 across pruning iterations, one global ranking of the raw "
             "values, pruning every `frequency` minibatches during training with the pruned channels gated to 0, "
             "then fine-tuning",
    adapted="each iteration prunes to i/n of the FLOPs target instead of a fixed neuron count; residual groups are one "
            "unit (squared summed terms / number of batch norms, like the code's stage-wide skip gates); per-layer "
            "cap; starts at the shared prune_epoch of a network trained from scratch (paper: a pretrained one)",
    defaults="frequency 30 minibatches, 32 iterations (the released configs), momentum 0.9",
)


@PRUNERS.register("taylor", source=TAYLOR_CARD.paper)
class Taylor(Pruner):
    Config = TaylorConfig
    method = TAYLOR_CARD
    criterion = "taylor"

    def __init__(self, config: Any):
        super().__init__(config)
        self.started = False
        self.iteration = 0           # pruning iterations done
        self.minibatches = 0         # since the prune point
        self.accumulated: list[torch.Tensor] | None = None  # criterion sums since the last iteration
        self.accumulated_batches = 0
        self.averaged: list[torch.Tensor] | None = None
        self.pruned: list[list[int]] | None = None
        self.trace: list[dict[str, Any]] = []
        self.finished_in_training: bool | None = None
        self._structure: tuple[PrunableNetwork, list[CoupledGroup]] | None = None
        self._masks: list | None = None

    # ----------------------------------------------------------------- structure
    def structure(self, ctx) -> tuple[PrunableNetwork, list[CoupledGroup]]:
        if self._structure is None or self._structure[0].model is not ctx.model:
            net = PrunableNetwork(ctx.model, ctx.data.image_size, ctx.data.in_channels)
            self._structure = (net, coupled_groups(net, self.config.max_prune_rate))
            self._masks = None
        return self._structure

    def done(self) -> bool:
        return self.iteration >= self.config.prune_iterations

    # ----------------------------------------------------------------- lifecycle
    def prune(self, ctx) -> dict[str, Any]:
        net, groups = self.structure(ctx)
        self._rates = layer_rates(net, groups, {})
        self.started = True
        self.pruned = [[] for _ in groups]
        self.accumulated = [torch.zeros(g.channels, dtype=torch.float64) for g in groups]
        return self._fields(ctx, None)

    def after_backward(self, ctx) -> None:
        if not self.started or self.done():
            return
        _, groups = self.structure(ctx)
        self._hold_gates(ctx)
        for g in groups:
            self.accumulated[g.index] += group_taylor(g)
        self.accumulated_batches += 1
        self.minibatches += 1
        if self.minibatches % self.config.frequency == 0:
            self._iterate(ctx)

    def on_train_end(self, ctx) -> dict[str, Any] | None:
        if not self.started:
            return None
        if not self.done():  # too few minibatches after the prune point: finish from more data
            self.finished_in_training = False
            _, groups = self.structure(ctx)
            ctx.model.zero_grad(set_to_none=True)
            images = self.config.frequency * ctx.config.optim.batch_size  # one iteration's worth
            for batch in ctx.training_batches(images, seed=ctx.config.seed + 1):
                ctx.passes([batch], backward=True)
                for g in groups:
                    self.accumulated[g.index] += group_taylor(g)
                self.accumulated_batches += 1
                ctx.model.zero_grad(set_to_none=True)
            self.iteration = self.config.prune_iterations - 1
            self._iterate(ctx)
        elif self.finished_in_training is None:
            self.finished_in_training = True
        start = time.perf_counter()
        net, groups = self.structure(ctx)
        self._rates = layer_rates(net, groups, {g.index: len(self.pruned[g.index]) for g in groups})
        remove_channels(net, groups, self.pruned)
        self._structure = None
        ctx.add_time("selection_s", time.perf_counter() - start)
        flops = count_cost(ctx.model, ctx.data.image_size, ctx.data.in_channels).flops
        budget = (1 - self.config.target_flops) * ctx.baseline_cost.flops
        reached = report_reach(ctx, self.config, flops, budget, flops_reduction(ctx.baseline_cost.flops, flops))
        return self._fields(ctx, reached)

    # ----------------------------------------------------------------- one pruning iteration
    def _iterate(self, ctx) -> None:
        start = time.perf_counter()
        net, groups = self.structure(ctx)
        contribution = [a / max(self.accumulated_batches, 1) for a in self.accumulated]
        if self.averaged is None:
            self.averaged = contribution
        else:
            self.averaged = [MOMENTUM * p + (1 - MOMENTUM) * c for p, c in zip(self.averaged, contribution)]
        self.accumulated = [torch.zeros_like(a) for a in self.accumulated]
        self.accumulated_batches = 0
        self.iteration += 1
        # pruned channels score -1 (they sort first and stay pruned: the code's criterion x gate = 0)
        scores = {}
        for g in groups:
            s = self.averaged[g.index].clone()
            s[self.pruned[g.index]] = -1.0
            scores[g.index] = s
        events = ranked_events(groups, scores)
        model = FlopsModel(net, groups)
        base = ctx.baseline_cost.flops
        goal = self.config.target_flops * self.iteration / self.config.prune_iterations
        sol = solve([g for _, g, _ in events], model, (1 - goal) * base, FINISH_TOLERANCE * base)
        before = sum(len(p) for p in self.pruned)
        # (a group passed over at the very end never gives back a channel it lost before)
        self.pruned = decide(ctx, lambda: [sorted(lowest(scores[g.index], max(sol.counts[g.index],
                                                                              len(self.pruned[g.index]))))
                                           for g in groups])  # rank 0's gates on every rank
        zero_channels(groups, self.pruned, batch_norm=True)
        self._masks = None
        self._hold_gates(ctx, momentum=True)
        seconds = time.perf_counter() - start
        ctx.add_time("selection_s", seconds)
        self.trace.append(step_entry(self.iteration, self.criterion, sum(len(p) for p in self.pruned) - before,
                                     flops_reduction(base, sol.flops), seconds, ctx.state.epochs_trained,
                                     minibatches=self.minibatches))

    def _hold_gates(self, ctx, momentum: bool = False) -> None:
        """Keep pruned channels at zero: no gradient (and, at a new pruning, no momentum left)."""
        if self._masks is None:
            self._masks = channel_params(self.structure(ctx)[1], self.pruned, batch_norm=True)
        optimizer = getattr(ctx.state, "optimizer", None)
        for p, keep in self._masks:
            if p.grad is not None:
                p.grad.mul_(keep)
            if momentum and optimizer is not None:
                buf = optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(keep)

    # ----------------------------------------------------------------- record and resume
    def _fields(self, ctx, reached: bool | None) -> dict[str, Any]:
        return record_fields(self.config, reached, self.trace, self.criterion, sum(len(p) for p in self.pruned),
                             self._rates, [], pruning_iterations=self.iteration, minibatches=self.minibatches,
                             finished_in_training=self.finished_in_training)

    def state_dict(self) -> dict[str, Any] | None:
        if not self.started:
            return None
        return {"iteration": self.iteration, "minibatches": self.minibatches, "accumulated": self.accumulated,
                "accumulated_batches": self.accumulated_batches, "averaged": self.averaged, "pruned": self.pruned,
                "trace": self.trace, "finished_in_training": self.finished_in_training}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.started = True
        self.iteration, self.minibatches = state["iteration"], state["minibatches"]
        self.accumulated, self.accumulated_batches = list(state["accumulated"]), state["accumulated_batches"]
        self.averaged = None if state["averaged"] is None else list(state["averaged"])
        self.pruned, self.trace = [list(p) for p in state["pruned"]], list(state["trace"])
        self.finished_in_training = state["finished_in_training"]
