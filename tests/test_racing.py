"""LAASP's approximate selection as a race: rounds, elimination factor, confidence bound."""
from __future__ import annotations

import math

import pytest
import torch

from harness.errors import UserError
from laasp.config import LAASPConfig
from laasp.racing import RaceSettings, clearly_worse, race
from laasp.selection import Candidate


class TableEvaluator:
    """Stands in for CandidateEvaluator: candidate k's loss on image i is ``table[k][i]``."""

    def __init__(self, table: list[list[float]]):
        self.table = {id_: row for id_, row in enumerate(table)}
        self.x = torch.zeros(len(table[0]))
        self.keep_per_image = False
        self.calls: list[tuple[list[int], int, int]] = []

    def losses(self, candidates, n_images=None, start_image=0):
        n_images = len(self.x) if n_images is None else min(n_images, len(self.x))
        self.calls.append(([c.sources[0][0] for c in candidates], start_image, n_images))
        for c in candidates:
            row = torch.tensor(self.table[c.sources[0][0]][start_image:n_images], dtype=torch.float64)
            c.loss_sum += row.sum().item()
            c.images += row.numel()
            if self.keep_per_image:
                c.per_image.append(row)


def _candidates(n: int) -> list[Candidate]:
    return [Candidate(removal=None, sources=[(k, "l1")]) for k in range(n)]


def test_eta_2_is_successive_halving() -> None:
    # 5 candidates, 16 images; mean losses 0 < 1 < 2 < 3 < 4 on every image range
    ev = TableEvaluator([[float(k)] * 16 for k in range(5)])
    winner = race(ev, _candidates(5), RaceSettings(start_fraction=0.125, eta=2))
    assert winner.sources[0][0] == 0
    # round 1: all 5 on images [0, 2); ceil(5/2)=3 go on to [2, 4); 2 to [4, 8); the last one left
    # still sees the next round's images, so its recorded loss rests on more of the subset
    assert ev.calls == [([0, 1, 2, 3, 4], 0, 2), ([0, 1, 2], 2, 4), ([0, 1], 4, 8), ([0], 8, 16)]


def test_eta_3_keeps_a_third_and_triples_the_images() -> None:
    ev = TableEvaluator([[float(k)] * 54 for k in range(7)])
    race(ev, _candidates(7), RaceSettings(start_fraction=2 / 54, eta=3))
    assert ev.calls == [(list(range(7)), 0, 2), ([0, 1, 2], 2, 6), ([0], 6, 18)]


def test_default_first_round_is_a_size_in_images() -> None:
    # the default race: round 1 on the first 800 images of a 10,000-image subset, eta 2
    ev = TableEvaluator([[float(k)] * 10_000 for k in range(10)])
    race(ev, _candidates(10), RaceSettings())
    assert [(len(ids), start, end) for ids, start, end in ev.calls] == [(10, 0, 800), (5, 800, 1600), (3, 1600, 3200),
                                                                        (2, 3200, 6400), (1, 6400, 10_000)]
    # LAASP's configuration runs that race unless told otherwise
    assert LAASPConfig(target_flops=0.5).race_settings() == RaceSettings()
    # a subset under 800 images: one round on all of it, i.e. exact selection
    small = TableEvaluator([[float(k)] * 256 for k in range(10)])
    race(small, _candidates(10), RaceSettings())
    assert small.calls == [(list(range(10)), 0, 256)]
    # a fraction, when given, still means a share of the subset
    assert RaceSettings(start_fraction=0.125).first_round(10_000) == 1250
    assert LAASPConfig(target_flops=0.3).race_settings() == RaceSettings()


def test_finalists_are_scored_on_the_whole_subset_when_the_field_is_large() -> None:
    # losses tie on early images; only the full subset separates them: the exact winner among finalists wins
    table = [[1.0] * 6 + [1.0, 1.0], [1.0] * 6 + [0.0, 0.0]]
    ev = TableEvaluator(table)
    winner = race(ev, _candidates(2), RaceSettings(start_fraction=0.5, eta=2))
    assert winner.sources[0][0] == 0  # after round 1 (ties: loop order) one is left
    assert ev.calls[-1][2] == 8


def test_confidence_bound_drops_a_clear_loser_that_halving_would_keep() -> None:
    # 0 is best; 1 is worse by about 1 on every image (clearly worse); 2 and 3 are worse by 1.5 and
    # 1.6 on average but swing by +-20 from image to image (not clearly worse after 16 images).
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(64, generator=gen, dtype=torch.float64).tolist()
    noise = (0.1 * torch.rand(64, generator=gen, dtype=torch.float64)).tolist()
    swing = [20.0 if i % 2 else -20.0 for i in range(64)]
    table = [base, [b + 1 + e for b, e in zip(base, noise)], [b + 1.5 + s for b, s in zip(base, swing)],
             [b + 1.6 + s for b, s in zip(base, swing)]]
    plain, bounded = TableEvaluator(table), TableEvaluator(table)
    race(plain, _candidates(4), RaceSettings(start_fraction=0.25, eta=2))
    cands = _candidates(4)
    race(bounded, cands, RaceSettings(start_fraction=0.25, eta=2, confidence=0.99))
    assert plain.calls[1][0] == [0, 1]  # halving keeps the two best means
    assert bounded.calls[1][0] == [0]  # halving kept 0 and 1; the bound removed 1, clearly worse
    assert all(not c.per_image for c in cands)  # per-image losses are dropped after the race


def test_the_bound_never_takes_a_place_in_the_cut() -> None:
    # 6 candidates, eta 3: the cut keeps 0 and 1. Candidates 3-5 are clearly worse than 0 and leave;
    # 2 is not clearly worse but ranks third. Applied first, the bound left 0, 1, 2 and the cut of
    # that field (ceil(3/3) = 1) kept only 0; applied after the cut, 0 and 1 both go on.
    gen = torch.Generator().manual_seed(1)
    base = torch.rand(60, generator=gen, dtype=torch.float64)
    swing = torch.tensor([3.0 if i % 2 else -3.0 for i in range(60)], dtype=torch.float64)
    table = [base, base + 0.1 + swing, base + 0.2 + swing, base + 5, base + 6, base + 7]
    ev = TableEvaluator([row.tolist() for row in table])
    race(ev, _candidates(6), RaceSettings(start_fraction=20 / 60, eta=3, confidence=0.99))
    assert ev.calls[1][0] == [0, 1]


def test_clearly_worse_is_the_paired_lower_bound() -> None:
    leader, other = _candidates(2)
    leader.per_image = [torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)]
    d = [0.5, 0.7, 0.4, 0.6]  # mean 0.55, sd 0.1291
    other.per_image = [leader.per_image[0] + torch.tensor(d, dtype=torch.float64)]
    mean, sd = 0.55, math.sqrt(sum((x - 0.55) ** 2 for x in d) / 3)
    z_pass, z_fail = (mean / (sd / 2)) * 0.99, (mean / (sd / 2)) * 1.01  # the bound is 0 at z = mean / (sd/sqrt(4))
    assert clearly_worse(other, leader, z_pass) and not clearly_worse(other, leader, z_fail)
    assert not clearly_worse(leader, other, 1.0)


def test_laasp_runs_with_race_settings() -> None:
    from tests.test_laasp import _pruner  # the tiny LAASP fixture used by the LAASP tests

    pruner = _pruner(selection="approx", approx_eta=3, approx_confidence=0.99, approx_check=True,
                     approx_start_fraction=0.25)
    step = pruner.step()
    assert step is not None and step.approx_agrees in (True, False) and step.loss is not None


@pytest.mark.parametrize("field,value,words", [("approx_eta", 1, "--approx-eta"),
                                               ("approx_confidence", 1.0, "--approx-confidence"),
                                               ("approx_confidence", 0.4, "--approx-confidence"),
                                               ("approx_start_fraction", 0.0, "--approx-start-fraction")])
def test_bad_race_settings_are_refused(field: str, value, words: str) -> None:
    with pytest.raises(UserError, match=words):
        LAASPConfig(target_flops=0.3, **{field: value}).validate()


def test_an_exact_runs_identity_leaves_the_race_out() -> None:
    # a state saved by an exact run under the old race defaults (0.125, eta 2) resumes under today's;
    # an approximate run's race is part of what it computes, so there it must match
    old = LAASPConfig(target_flops=0.3, approx_start_fraction=0.125, approx_eta=2)
    assert old.identity() == LAASPConfig(target_flops=0.3).identity()
    assert "approx_eta" not in old.identity()
    for mode in ({"selection": "approx"}, {"approx_check": True}):
        assert (LAASPConfig(target_flops=0.3, approx_eta=4, **mode).identity()
                != LAASPConfig(target_flops=0.3, **mode).identity())
