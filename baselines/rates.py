"""Hand-set pruning rates, the papers' way, as an alternative to a solved FLOPs target.

The papers set rates by hand (SFP/FPGM: one rate for every layer; PFEC: one per stage; HRank:
one per layer); the harness solves a uniform rate for ``--target-flops`` instead. ``--rates``
gives the paper's form back: one value (every layer), one per stage (the model's top-level
blocks: ``layer1``, ``layer2``, ... in the ResNets), or one per coupled layer group (module
order of each group's first conv; the record's ``layer_rates`` lists them). A rate is the
*pruned* fraction. How a rate becomes a filter count follows each paper's code: PFEC keeps
``int(C x (1 - rate))`` filters, SFP, FPGM and HRank prune ``int(C x rate)``.

The list's length is checked against the model before any training (`RatesConfig.validate`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from harness.errors import UserError
from harness.prune.pruner import PruneSchedule


@dataclass(frozen=True)
class RatesConfig(PruneSchedule):
    """A FLOPs target (solved) or hand-set ``rates``, exactly one of them."""

    target_flops: float | None = None
    rates: tuple[float, ...] | None = None  # pruned fraction: 1 value, one per stage, or one per layer group

    def validate(self, job=None) -> None:
        if self.rates is None:
            if self.target_flops is None:
                raise UserError("this pruner needs --target-flops (or hand-set --rates, e.g. --rates 0.4)")
            super().validate(job)
            return
        if self.target_flops is not None:
            raise UserError("give --target-flops or --rates, not both: --rates sets the pruned fraction by hand")
        if not self.rates or any(not 0 <= r < 1 for r in self.rates):
            raise UserError(f"--rates must be pruned fractions in [0, 1), e.g. 0.4 or 0.6,0.3,0.1 "
                            f"(got {','.join(map(str, self.rates)) or 'nothing'})")
        self.validate_schedule(job)
        model = getattr(job, "model", None)
        if model is not None:
            rate_scopes(model, len(self.rates), self.rate_layers(model))

    def rate_layers(self, model: str) -> tuple[str, ...] | None:
        """Names of the groups' first convs that ``rates`` index (None: every group of the model)."""
        return None


def stage_of(layer_name: str) -> str:
    """The top-level block a layer sits in (``layer2.3.conv1`` -> ``layer2``; VGG: ``features``)."""
    return layer_name.split(".")[0]


@lru_cache(maxsize=None)
def model_groups(model: str) -> tuple[tuple[str, bool], ...]:
    """(first conv, residual-tied?) of every coupled group of ``model``, in module order (built
    once per process, on CPU, for checks before training)."""
    from baselines.common import coupled_groups, is_residual_tied
    from harness.models import MODELS, build_model
    from harness.prune.prunable import PrunableNetwork

    size = MODELS.meta(model)["input_size"]
    net = PrunableNetwork(build_model(model, 10, 3), size, 3)
    return tuple((g.root.name, is_residual_tied(g)) for g in coupled_groups(net))


def model_roots(model: str) -> tuple[str, ...]:
    return tuple(root for root, _ in model_groups(model))


def rate_scopes(model: str, n_rates: int, roots: Sequence[str] | None = None) -> list[int]:
    """For each group (``roots``: their first convs, default every group of ``model``), the index
    of its rate in a list of ``n_rates``; UserError naming the lengths that fit."""
    roots = list(model_roots(model) if roots is None else roots)
    stages = list(dict.fromkeys(stage_of(r) for r in roots))
    if n_rates == 1:
        return [0] * len(roots)
    if n_rates == len(roots):
        return list(range(len(roots)))
    if n_rates == len(stages):
        return [stages.index(stage_of(r)) for r in roots]
    raise UserError(f"--rates has {n_rates} values, but {model} takes 1 (every layer), {len(stages)} (one per "
                    f"stage: {', '.join(stages)}) or {len(roots)} (one per prunable layer group, in module order: "
                    f"{roots[0]}, ..., {roots[-1]})")


def counts_from_rates(rates: Sequence[float], scopes: Sequence[int], channels: Sequence[int],
                      keep_floor: bool) -> list[int]:
    """Filters to prune per group: ``C - int(C (1 - r))`` (``keep_floor``, PFEC) or ``int(C r)``;
    a group always keeps one filter."""
    counts = []
    for scope, c in zip(scopes, channels):
        r = rates[scope]
        n = c - int(c * (1 - r) + 1e-9) if keep_floor else int(c * r + 1e-9)
        counts.append(min(n, c - 1))
    return counts
