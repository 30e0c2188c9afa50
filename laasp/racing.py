"""Approximate selection as a race: cheap rounds on few images drop the clear losers early.

Round 1 evaluates every candidate on the first ``start_fraction`` of the loss subset, by default
on its first DEFAULT_START_IMAGES images (the whole subset when it is smaller). After each round:

1. the best ``1/eta`` of the field (rounded up) goes on, and sees ``eta`` times as many
   images as the round before (successive halving for ``eta = 2``);
2. optionally (``confidence``), any of those whose loss is worse than the leader's with that
   one-sided confidence leaves too: on the images both have seen, the per-image loss
   differences d_i = loss_c(i) - loss_leader(i) give a normal lower bound
   mean(d) - z * sd(d) / sqrt(n); above 0, c is clearly worse. The pairing removes the
   image-to-image variance the two share, which is most of it. The bound only shortens the
   list the cut kept. (Applied before the cut, as until 2026-12, it shrank the field the cut
   took its 1/eta of, so it also dropped candidates it had not judged worse: replayed on saved
   losses, `benchmarks/simulate_races.py`, that cost a 625-image race 6 points of agreement
   at 0.999 on two ResNet-20 steps; applied after, none.)

until one candidate is left (it still sees the next round's images, so its recorded loss rests on
more of the subset) or the whole subset has been used; the smallest mean loss then wins,
ties going to the authors' loop order as in exact selection. With ``eta = 2`` and no confidence
bound this is the original successive halving, decision for decision. Every candidate that
reaches the last round is scored on the same images, so the winner is the exact winner among
the finalists; what the race can miss is a candidate dropped on too few images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch

from laasp.selection import Candidate, CandidateEvaluator, best

# The measured frontier (results/approx_frontier/README.md: ResNet-20 and -56 trained on real
# CIFAR-10, subsets of 1,000-10,000 images) depends on how many images round 1 sees, not on
# what share of the subset that is. So the default first round is a size in images: the speed-up
# then grows with the subset. Replayed in 100 image orders per step at the paper's 10,000 images,
# 800 images with eta 2 is the one setting measured at 95% agreement or more on both ResNet-20
# (99.4%, 16 steps) and ResNet-56 (95.5%, 4 steps); 625 with eta 3, the default until 2026-12-03,
# gave 96.3% and 79.0% (ResNet-56's best candidates are near-ties) for about 1.2x the speed.
DEFAULT_START_IMAGES = 800
DEFAULT_ETA = 2
# The forwards a race may run in. Exact selection is always true fp32; "bf16" scores the race's
# candidates under bfloat16 autocast: on a CPU with AVX512-BF16 the 800/eta 2 race ran 2.0-2.3x
# faster than in fp32 on the same states, and picked the same candidates in replays over 8
# ResNet-20 steps (results/approx_frontier/README.md, ninth measurement), although bf16 moves a
# candidate's mean loss by ~0.03%: near-tied candidates (one layer, two criteria) move together.
RACE_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class RaceSettings:
    start_fraction: float | None = None  # share of the subset every candidate sees in round 1 (None: DEFAULT_START_IMAGES)
    eta: int = DEFAULT_ETA         # keep ceil(field / eta) per round; images x eta per round
    confidence: float | None = None  # one-sided level of the early-elimination bound (None: off)
    precision: str = "fp32"         # RACE_PRECISIONS: the forwards the race's rounds run in

    def first_round(self, n_total: int) -> int:
        if self.start_fraction is None:
            return min(n_total, DEFAULT_START_IMAGES)
        return max(1, int(round(self.start_fraction * n_total)))

    def describe(self) -> str:
        start = (f"first round {DEFAULT_START_IMAGES} images" if self.start_fraction is None
                 else f"start {self.start_fraction:g}")
        return (f"{start}, eta {self.eta}, " + ("no bound" if self.confidence is None else f"bound {self.confidence:g}")
                + ("" if self.precision == "fp32" else f", {self.precision} forwards"))


def clearly_worse(candidate: Candidate, leader: Candidate, z: float) -> bool:
    """The paired lower confidence bound of ``loss(candidate) - loss(leader)`` is above 0."""
    d = torch.cat(candidate.per_image) - torch.cat(leader.per_image)
    n = d.numel()
    if n < 2:
        return False
    mean, sd = d.mean().item(), d.std(unbiased=True).item()
    return mean - z * sd / math.sqrt(n) > 0


def race(evaluator: CandidateEvaluator, candidates: list[Candidate], settings: RaceSettings) -> Candidate:
    n_total = len(evaluator.x)
    z = NormalDist().inv_cdf(settings.confidence) if settings.confidence is not None else None
    evaluator.keep_per_image = z is not None
    evaluator.autocast_dtype = RACE_PRECISIONS[settings.precision]
    try:
        seen = 0
        n = settings.first_round(n_total)
        alive = list(candidates)
        while True:
            evaluator.losses(alive, n_images=n, start_image=seen)
            seen = min(n, n_total)
            if len(alive) == 1 or seen >= n_total:
                return best(alive)
            alive = sorted(alive, key=lambda c: c.loss)[: max(1, math.ceil(len(alive) / settings.eta))]
            if z is not None:  # after the cut: the bound only removes candidates the cut kept
                alive = [c for c in alive if c is alive[0] or not clearly_worse(c, alive[0], z)]
            n = min(n_total, settings.eta * n)
    finally:
        evaluator.keep_per_image = False
        evaluator.autocast_dtype = None
        for c in candidates:
            c.per_image.clear()
