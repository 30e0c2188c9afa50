"""LAASP's candidate evaluation split across the ranks of a data-parallel run.

Rank r evaluates candidates r, r + N, ... of the list (every rank holds the same list: rank 0's
moves, `laasp.pruner.LAASP.candidates`) on the whole loss subset, exactly as one process would,
then every candidate's sums are all-gathered: every rank ends with the numbers one process
computes, and so with the same pick. The race of approximate selection calls `losses` once per
round, so its rounds are split the same way (the candidates still alive, round-robin); the
per-image losses a confidence bound needs travel with the sums.
"""
from __future__ import annotations

from typing import Any

from harness.train.distributed import World
from laasp.selection import Candidate, CandidateEvaluator, best


class SplitEvaluator:
    """`CandidateEvaluator`'s interface (``x``, ``y``, ``keep_per_image``, ``losses``, ``exact``)
    over this rank's share of the candidates."""

    def __init__(self, inner: CandidateEvaluator, world: World):
        self.inner, self.world = inner, world

    @property
    def x(self):
        return self.inner.x

    @property
    def y(self):
        return self.inner.y

    @property
    def plan(self):
        return self.inner.plan

    @property
    def keep_per_image(self) -> bool:
        return self.inner.keep_per_image

    @keep_per_image.setter
    def keep_per_image(self, value: bool) -> None:
        self.inner.keep_per_image = value

    def losses(self, candidates: list[Candidate], n_images: int | None = None, start_image: int = 0) -> None:
        rank, size = self.world.rank, self.world.size
        mine = list(range(rank, len(candidates), size))
        own = set(mine)
        kept = [len(candidates[i].per_image) for i in mine]
        if mine:
            self.inner.losses([candidates[i] for i in mine], n_images, start_image)
        # the owner's whole sums replace the others' copies (adding a difference would round)
        results: list[tuple[int, float, int, list[Any]]] = [
            (i, candidates[i].loss_sum, candidates[i].images, [t.cpu() for t in candidates[i].per_image[k:]])
            for i, k in zip(mine, kept)]
        for gathered in self.world.all_gather(results):
            for i, loss_sum, images, new_per_image in gathered:
                if i in own:
                    continue
                cand = candidates[i]
                cand.loss_sum, cand.images = loss_sum, images
                cand.per_image.extend(new_per_image)

    def exact(self, candidates: list[Candidate]) -> Candidate:
        self.losses(candidates)
        return best(candidates)
