"""``depgraph``: Fang, Ma, Song, Mi, Wang, "DepGraph: Towards Any Structural Pruning" (CVPR 2023),
through torch-pruning, its reference implementation, as its CIFAR benchmark runs it
(``reproduce/main.py``, method ``group_sl``).

- **Group sparse learning** (every epoch before ``prune_epoch``): torch-pruning's
  ``GroupNormPruner.regularize`` after each backward pass, before the optimizer step. It adds
  ``reg x alpha^((max - s) / (max - min)) x w`` to the gradient of every parameter slice of a
  coupled group's channel (conv output rows, next-layer input columns, batch-norm scales),
  where ``s`` is the channel's group norm (``GroupMagnitudeImportance(p=2, normalizer='max')``,
  square-rooted) and alpha is 16, so the weakest channels of each group are pushed to zero
  hardest. As in the benchmark, the optimizer's weight decay is 0 while it regularises.
- **Pruning** at ``prune_epoch``: the same pruner's global ranking by group norm
  (``global_pruning=True``), ``iterative_steps`` 400, re-scored after each step, until the
  FLOPs target (`baselines.tp_library.prune_progressively`); then the shared fine-tuning.

Adapted: the target is a FLOPs reduction measured by the harness's counter (the benchmark
asks for a speed-up by torch-pruning's ``count_ops_and_params``, which also counts batch norm,
ReLU and pooling); the benchmark's sparse learning starts from a pretrained network at lr 0.01
for 100 epochs, ours is the run's training before ``prune_epoch``; the last step is applied in
part to land on the target; the per-layer cap is ``max_pruning_ratio``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch_pruning as tp

from baselines.tp_library import build_pruner, prune_with_library
from harness.errors import UserError
from harness.prune.pruner import PRUNERS, MethodCard, Pruner, PruneSchedule


@dataclass(frozen=True)
class DepGraphConfig(PruneSchedule):
    reg: float = 5e-4            # --reg of the benchmark's ResNet-56 and VGG-19 group_sl runs
    iterative_steps: int = 400   # --iterative-steps of reproduce/main.py

    def validate(self, job=None) -> None:
        super().validate(job)
        if not self.reg > 0:
            raise UserError(f"--reg must be > 0 (got {self.reg}): it is depgraph's group sparsity strength "
                            "(the benchmark: 5e-4)")
        if self.iterative_steps < 1:
            raise UserError(f"--iterative-steps must be >= 1 (got {self.iterative_steps})")


DEPGRAPH_CARD = MethodCard(
    paper="Fang, Ma, Song, Mi, Wang: DepGraph: Towards Any Structural Pruning, CVPR 2023",
    official_code="VainF/Torch-Pruning 1.6.1 (@e80127d): GroupNormPruner, GroupMagnitudeImportance; "
                  "reproduce/main.py method group_sl",
    faithful="torch-pruning's own GroupNormPruner: group sparse learning (regularize after every backward, weight "
             "decay 0 meanwhile), GroupMagnitudeImportance(p=2, normalizer='max'), global ranking over whole coupled "
             "groups (residual channels included), 400 iterative steps re-scored each step, classifier never pruned",
    adapted="stops at a FLOPs reduction by the harness's counter (benchmark: a speed-up by count_ops_and_params), the "
            "last step applied in part to land on it; sparse learning = the run's epochs before prune_epoch (benchmark: "
            "100 epochs at lr 0.01 from a pretrained network); per-layer cap as max_pruning_ratio",
    defaults="reg 5e-4, alpha 16 (regularize's default), 400 iterative steps",
)


@PRUNERS.register("depgraph", source=DEPGRAPH_CARD.paper)
class DepGraph(Pruner):
    Config = DepGraphConfig
    method = DEPGRAPH_CARD
    criterion = "group_norm"

    def __init__(self, config: Any):
        super().__init__(config)
        self._pruner = None

    def library_pruner(self, ctx):
        if self._pruner is None or self._pruner.model is not ctx.model:
            self._pruner = build_pruner(tp.pruner.GroupNormPruner, ctx,
                                        tp.importance.GroupMagnitudeImportance(p=2, normalizer="max"),
                                        global_pruning=True, iterative_steps=self.config.iterative_steps,
                                        max_prune_rate=self.config.max_prune_rate, reg=self.config.reg)
        return self._pruner

    def weight_decay(self, ctx) -> float | None:
        return 0.0 if ctx.stage == "train" else None  # the benchmark: weight_decay 0 while regularising

    def after_backward(self, ctx) -> None:
        if ctx.stage == "train":
            self.library_pruner(ctx).regularize(ctx.model)

    def prune(self, ctx) -> dict[str, Any]:
        return prune_with_library(self.library_pruner(ctx), ctx, self.config, self.criterion, reg=self.config.reg,
                                  sparse_learning_epochs=ctx.state.epochs_trained)
