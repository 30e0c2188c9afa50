"""``tp:<Importance>``: any importance class of torch-pruning by name, e.g. ``tp:GroupTaylorImportance``,
at a uniform ratio (default) or ranked across layers (``--global-ranking``), pruned progressively
to the FLOPs target at ``prune_epoch`` (`baselines.tp_library`), so the library's whole set of
criteria is available without writing a plugin. One name is registered per class that
``torch_pruning.pruner.importance`` defines (`run_bench.py info --list` shows them), each built
with the library's default arguments.

Data: the gradient-based ones get it before every step from one minibatch of training images
through the harness (``ctx.passes``): ``GroupTaylorImportance`` (and its alias) the summed
gradients of the minibatch, ``GroupHessianImportance`` per-sample squared gradients of its first
32 images (``accumulate_grad`` after each sample's backward, as its docstring shows; in
torch-pruning 1.6.1 it keeps only the last sample's, a library bug we leave as is), and
``ActivationImportance`` the inputs' mean magnitude (``compute_importance``). The library's
examples accumulate 10 minibatches before a single one-shot step; with 400 progressive steps we
draw one per step. ``OBDCImportance`` is not offered: it needs the pruner's own model
preparation and per-step Fisher updates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch_pruning as tp

from baselines.lamp import LibraryConfig
from baselines.tp_library import build_pruner, importance_classes, prune_with_library
from harness.prune.pruner import PRUNERS, MethodCard, Pruner

UNSUPPORTED = {"OBDCImportance"}
HESSIAN_SAMPLES = 32


@dataclass(frozen=True)
class TPConfig(LibraryConfig):
    global_ranking: bool = False  # one ranking across layers (the library normalises scores per group)


def _card(name: str) -> MethodCard:
    return MethodCard(
        paper=f"torch-pruning's {name} (Fang et al., DepGraph, CVPR 2023, and the method it implements)",
        official_code=f"VainF/Torch-Pruning 1.6.1 (@e80127d): tp.importance.{name} with its default arguments, "
                      "MetaPruner",
        faithful="the library's importance and pruner as they are: coupled groups scored and pruned together, "
                 "re-scored every step, classifier never pruned",
        adapted="stops at the FLOPs target by the harness's counter (the last step applied in part); data-driven "
                "importances get one training minibatch per step through the harness",
        defaults="uniform ratio (--global-ranking for one ranking), 400 iterative steps, per-layer cap as "
                 "max_pruning_ratio",
    )


class LibraryImportancePruner(Pruner):
    """One torch-pruning importance class, driven by the library's MetaPruner."""

    Config = TPConfig
    importance_name: str = ""

    def prune(self, ctx) -> dict[str, Any]:
        importance = importance_classes()[self.importance_name]()
        pruner = build_pruner(tp.pruner.MetaPruner, ctx, importance, global_pruning=self.config.global_ranking,
                              iterative_steps=self.config.iterative_steps, max_prune_rate=self.config.max_prune_rate)
        return prune_with_library(pruner, ctx, self.config, self.importance_name,
                                  before_step=self._data_step(ctx, importance),
                                  global_ranking=self.config.global_ranking)

    def _data_step(self, ctx, importance: Any) -> Callable[[], None] | None:
        """What the importance needs from data before each step (None: weights only)."""
        imp = tp.pruner.importance
        steps = iter(range(10**9))

        def batches():
            return ctx.training_batches(ctx.config.optim.batch_size, seed=ctx.config.seed * 1009 + next(steps))

        if isinstance(importance, imp.GroupTaylorImportance):
            def taylor() -> None:
                ctx.model.zero_grad(set_to_none=True)
                ctx.passes(batches(), backward=True)
            return taylor
        if isinstance(importance, imp.GroupHessianImportance):
            def hessian() -> None:
                importance.zero_grad()
                x, y = batches()[0]
                for i in range(min(HESSIAN_SAMPLES, len(y))):
                    ctx.model.zero_grad(set_to_none=True)
                    ctx.passes([(x[i:i + 1], y[i:i + 1])], backward=True)
                    importance.accumulate_grad(ctx.model)
            return hessian
        if isinstance(importance, imp.ActivationImportance):
            def activation() -> None:
                with importance.compute_importance(ctx.model):
                    ctx.passes(batches())
            return activation
        return None


def _register() -> None:
    for name in importance_classes():
        if name in UNSUPPORTED:
            continue
        card = _card(name)
        cls = type(f"TP_{name}", (LibraryImportancePruner,), {"importance_name": name, "method": card,
                                                               "__module__": __name__})
        PRUNERS.register(f"tp:{name}", source=f"torch-pruning {name}")(cls)


_register()
