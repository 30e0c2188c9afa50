"""LAASP's selection loop, one step per call, usable without the harness or Ray.

    pruner = LAASP(model, config, subset_x, subset_y, input_size=32, in_channels=3)
    while not pruner.done():
        step = pruner.step()          # one selection + one real removal
        if step is None: break        # no layer left under its cap: target unreachable

`prune_to_target` is the one-call form. Between steps the harness may train (recovery) and
checkpoint: `state_dict()` holds everything besides the model needed to continue.

Data-parallel (``world``, `harness.train.distributed`): every rank runs the same steps on the
same network; rank 0's moves are every rank's candidates, the candidates are evaluated split
across the ranks (`laasp.split`), and every rank applies the same pick.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Callable

import torch
from torch import nn

from harness.prune.flops import count_cost, reduction
from laasp.config import LAASPConfig
from harness.prune.criteria import CRITERIA, CriterionInput, lowest, needs_data
from harness.prune.probe import Probe
from harness.prune.prunable import Layer, PrunableNetwork
from harness.prune.pruner import StepResult, cap_count  # noqa: F401 (the step API returns StepResult)
from harness.train.distributed import SINGLE, World
from laasp.racing import race
from laasp.selection import Candidate, CandidateEvaluator
from laasp.split import SplitEvaluator

log = logging.getLogger("laasp")


class LAASP:
    def __init__(self, model: nn.Module, config: LAASPConfig, subset_x: torch.Tensor, subset_y: torch.Tensor,
                 input_size: int, in_channels: int, state: dict[str, Any] | None = None, world: World = SINGLE):
        config.validate()
        self.model = model
        self.config = config
        self.world = world
        self.net = PrunableNetwork(model, input_size, in_channels)
        self.evaluator = CandidateEvaluator(model, subset_x, subset_y, config.chunk_size, config.candidate_batch)
        if world.distributed:
            self.evaluator = SplitEvaluator(self.evaluator, world)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.trace: list[dict[str, Any]] = []
        self.baseline_flops = count_cost(model, input_size, in_channels).flops
        self.original_filters = {layer.name: layer.original_filters for layer in self.net.layers}
        self.flops_step: dict[str, int] = {}
        self._probe: Probe | None = None  # data-driven criteria's scores on the subset, per network
        if state is not None:
            self._load_state(state)
        else:
            self._init_steps()
        for layer in self.net.layers:  # channel counts at the very start, also after a resume
            layer.original_filters = self.original_filters[layer.name]
        self._count_flops()

    # ----------------------------------------------------------------- set-up
    def _init_steps(self) -> None:
        """FLOPs step per layer, fixed before pruning starts (LAASP.md, "Step size")."""
        if self.config.step_rule != "flops":
            return
        per_filter = self.net.flops_per_filter()
        for layer in self.net.layers:
            drop = per_filter[layer.name] / self.baseline_flops
            self.flops_step[layer.name] = max(1, round(self.config.step_scale / (100 * drop))) if drop > 0 else 1

    def cap_count(self, layer: Layer) -> int:
        """Most filters the layer may lose; it always keeps at least one."""
        return cap_count(layer.original_filters, self.config.max_prune_rate)

    def step_size(self, layer: Layer) -> int:
        if self.config.step_rule == "flops":
            n = self.flops_step[layer.name]
        else:
            n = max(1, round(self.config.step_scale * layer.filters))
        return min(n, self.cap_count(layer) - layer.removed)

    def open_layers(self) -> list[Layer]:
        return [layer for layer in self.net.layers if layer.removed < self.cap_count(layer)]

    # ----------------------------------------------------------------- progress
    def flops(self) -> int:
        return self._flops

    def _count_flops(self) -> None:
        """Counted when the structure changes (set-up and each removal), not on every query."""
        self._flops = count_cost(self.model, self.net.input_size, self.net.in_channels).flops

    def reduction(self) -> float:
        return reduction(self.baseline_flops, self.flops())

    def done(self) -> bool:
        return self.reduction() >= self.config.target_flops

    # ----------------------------------------------------------------- one step
    def probe(self) -> Probe | None:
        """Scores of the data-driven criteria (taylor, hrank) on the loss subset, when the pool
        has one; computed once per network (a removal makes a new one)."""
        if self._probe is None and any(needs_data(c) for c in self.config.criteria):
            targets = [layer.bn if layer.bn is not None else layer.module for layer in self.net.layers]
            self._probe = Probe(self.model, self.evaluator.x, self.evaluator.y, targets)
        return self._probe

    def moves(self) -> list[tuple[str, str, list[int]]]:
        """Every (layer, criterion, filters it removes) of this step, in the authors' loop order."""
        probe = self.probe()
        moves = []
        for layer in self.open_layers():
            n = self.step_size(layer)
            for crit in self.config.criteria:
                scores = CRITERIA.get(crit)(CriterionInput(layer.module, layer.bn, self.generator, probe))
                moves.append((layer.name, crit, [int(i) for i in lowest(scores, n)]))
        return moves

    def candidates(self) -> list[Candidate]:
        """Every move, merged when two produce the same network. Data-parallel, rank 0's moves
        are every rank's: its scores decide (no rounding difference can split the ranks)."""
        by_key: dict[tuple, Candidate] = {}
        for layer_name, crit, idxs in self.world.decide(self.moves):
            removal = self.net.removal(self.net.by_name[layer_name], idxs)
            key = removal.key(self.net.names)
            if key in by_key:
                by_key[key].sources.append((layer_name, crit))
            else:
                by_key[key] = Candidate(removal, [(layer_name, crit)])
        return list(by_key.values())

    def select(self, candidates: list[Candidate]) -> Candidate:
        """The configured search (exact, or the race of `laasp.racing`) over ``candidates``."""
        if self.config.selection == "exact":
            return self.evaluator.exact(candidates)
        return race(self.evaluator, candidates, self.config.race_settings())

    def shadow_select(self, candidates: list[Candidate]) -> Candidate:
        """The other search, on fresh copies of the candidates (``approx_check``)."""
        pool = [Candidate(c.removal, c.sources) for c in candidates]
        if self.config.selection == "exact":
            return race(self.evaluator, pool, self.config.race_settings())
        return self.evaluator.exact(pool)

    def step(self) -> StepResult | None:
        start = time.perf_counter()
        candidates = self.candidates()
        if not candidates:
            return None
        winner = self.select(candidates)
        selection_s = time.perf_counter() - start
        agrees, check_s = None, 0.0
        if self.config.approx_check:
            # The other selection runs in the shadow; the configured one is applied.
            check_start = time.perf_counter()
            agrees = self.shadow_select(candidates).removal == winner.removal
            check_s = time.perf_counter() - check_start
        return self.apply(winner, candidates, selection_s, agrees, check_s)

    def apply(self, winner: Candidate, candidates: list[Candidate], selection_s: float = 0.0,
              agrees: bool | None = None, check_s: float = 0.0) -> StepResult:
        """Remove the winner's filters for real and trace the step."""
        layer_name, crit = winner.sources[0]
        full = [c for c in candidates if c.images == len(self.evaluator.x) and c is not winner]
        runner_up = min((c.loss for c in full), default=None)
        layer = self.net.by_name[layer_name]
        idxs = list(winner.removal.idxs)
        self.net.remove(layer, idxs)
        self._probe = None
        self._count_flops()
        result = StepResult(
            step=len(self.trace) + 1, layer=layer_name, criterion=crit, removed=len(idxs), loss=winner.loss,
            runner_up_loss=runner_up, flops_reduction=self.reduction(), candidates=len(candidates),
            tied_criteria=[c for ln, c in winner.sources[1:] if ln == layer_name], selection_s=selection_s,
            approx_agrees=agrees, check_s=check_s,
        )
        self.trace.append(result.as_dict())
        log.info("step %d: %s/%s -%d filters, loss %.4f, FLOPs -%.1f%%", result.step, layer_name, crit,
                 len(idxs), winner.loss, 100 * result.flops_reduction)
        return result

    # ----------------------------------------------------------------- summaries
    def removed_per_criterion(self) -> dict[str, int]:
        counts: Counter[str] = Counter({c: 0 for c in self.config.criteria})
        for entry in self.trace:
            counts[entry["criterion"]] += entry["removed"]
        return dict(counts)

    def layer_rates(self) -> dict[str, float]:
        return {layer.name: layer.removed / layer.original_filters for layer in self.net.layers}

    def state_dict(self) -> dict[str, Any]:
        return {"trace": self.trace, "original_filters": self.original_filters, "flops_step": self.flops_step,
                "baseline_flops": self.baseline_flops, "generator": self.generator.get_state()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.trace = list(state["trace"])
        self.original_filters = dict(state["original_filters"])
        self.flops_step = dict(state["flops_step"])
        self.baseline_flops = int(state["baseline_flops"])
        self.generator.set_state(state["generator"])


def prune_to_target(pruner: LAASP, after_step: Callable[[StepResult], None] | None = None) -> bool:
    """Run steps until the target is reached; False when the caps make it unreachable."""
    while not pruner.done():
        result = pruner.step()
        if result is None:
            log.warning("target FLOPs reduction %.3f unreachable under the per-layer cap %.2f: stopped at %.3f",
                        pruner.config.target_flops, pruner.config.max_prune_rate, pruner.reduction())
            return False
        if after_step is not None:
            after_step(result)
    return True
