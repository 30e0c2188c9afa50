"""Which differences between two groups of runs are real: the statistics behind ``table --against``.

Two groups of the same model, dataset and FLOPs target are compared run by run where their
runs pair up by seed (the same data order and, for pruners that prune at the same epoch, the
same network at the prune point), so the seed-to-seed spread that both share cancels out:

- **paired** (both groups have each seed once and share at least two seeds): the per-seed
  differences d = reference - other, their mean, a 95% confidence interval from Student's t
  with n - 1 degrees of freedom and a two-sided paired t-test (`scipy.stats.ttest_rel`); from
  `WILCOXON_MIN_PAIRS` pairs on, also the Wilcoxon signed-rank test (`scipy.stats.wilcoxon`),
  which does not assume normal differences. Runs whose seed the other group lacks are left out
  and counted.
- **unpaired** (seeds do not pair up): Welch's t-test (`scipy.stats.ttest_ind`,
  ``equal_var=False``) and its interval (Welch-Satterthwaite degrees of freedom).

Across the rows of a view the p-values are adjusted with Holm's step-down method (`holm`),
which bounds the chance of calling any true null significant by `ALPHA`; only an adjusted
p-value below it makes a difference "significant". Rendering lives in
`harness.results.against`; this module knows numbers and seeds, not records or formats.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Hashable, Sequence

from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
WILCOXON_MIN_PAIRS = 6

PAIRED, WELCH, NO_TEST = "paired t", "Welch t (unpaired)", "none"

Runs = Sequence[tuple[Hashable, float]]  # (seed, value) per run


@dataclass(frozen=True)
class Difference:
    """reference - other: the estimate, its interval and the test's p-value (None where undefined)."""

    test: str                                     # PAIRED, WELCH or NO_TEST
    n_reference: int                              # runs with a value in each group
    n_other: int
    pairs: tuple[tuple[Hashable, float], ...]     # (seed, reference - other); paired only
    mean: float | None                            # mean difference (paired) or difference of means
    ci: tuple[float, float] | None
    p: float | None
    wilcoxon_p: float | None = None               # paired, >= WILCOXON_MIN_PAIRS pairs
    left_out: int = 0                             # runs without a partner seed (paired)
    why: str | None = None                        # why there is no test or no p-value

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)


def compare(reference: Runs, other: Runs) -> Difference:
    """Paired by seed where the seeds allow it, else Welch; see the module docstring."""
    ref = [(s, float(v)) for s, v in reference if v is not None and math.isfinite(v)]
    oth = [(s, float(v)) for s, v in other if v is not None and math.isfinite(v)]
    ref_seeds, oth_seeds = [s for s, _ in ref], [s for s, _ in oth]
    unique = len(set(ref_seeds)) == len(ref_seeds) and len(set(oth_seeds)) == len(oth_seeds)
    common = [s for s in ref_seeds if s in set(oth_seeds)]
    if unique and len(common) >= 2:
        a, b = dict(ref), dict(oth)
        return paired([(s, a[s], b[s]) for s in common], len(ref), len(oth))
    return welch([v for _, v in ref], [v for _, v in oth])


def paired(triples: Sequence[tuple[Hashable, float, float]], n_reference: int | None = None,
           n_other: int | None = None) -> Difference:
    """Paired t-test (and Wilcoxon from 6 pairs) on (seed, reference, other) triples."""
    n_ref = len(triples) if n_reference is None else n_reference
    n_oth = len(triples) if n_other is None else n_other
    pairs = tuple((s, a - b) for s, a, b in triples)
    diffs = [d for _, d in pairs]
    left_out = n_ref + n_oth - 2 * len(pairs)
    base = dict(test=PAIRED, n_reference=n_ref, n_other=n_oth, pairs=pairs, left_out=left_out)
    if len(diffs) < 2:
        return Difference(**{**base, "test": NO_TEST}, mean=diffs[0] if diffs else None, ci=None, p=None,
                          why="fewer than 2 pairs")
    mean = statistics.fmean(diffs)
    if statistics.stdev(diffs) == 0:  # t is undefined: every seed moved by the same amount
        return Difference(**base, mean=mean, ci=(mean, mean), p=None,
                          why="every pair differs by the same amount: no spread to test against")
    result = stats.ttest_rel([a for _, a, _ in triples], [b for _, _, b in triples])
    interval = result.confidence_interval(CONFIDENCE)
    return Difference(**base, mean=mean, ci=(float(interval.low), float(interval.high)), p=float(result.pvalue),
                      wilcoxon_p=_wilcoxon(diffs))


def _wilcoxon(diffs: Sequence[float]) -> float | None:
    if len(diffs) < WILCOXON_MIN_PAIRS or not any(diffs):
        return None
    return float(stats.wilcoxon(diffs).pvalue)


def welch(reference: Sequence[float], other: Sequence[float]) -> Difference:
    """Welch's unequal-variance t-test on two independent samples."""
    base = dict(test=WELCH, n_reference=len(reference), n_other=len(other), pairs=())
    if not reference or not other:
        return Difference(**{**base, "test": NO_TEST}, mean=None, ci=None, p=None, why="a group has no runs")
    mean = statistics.fmean(reference) - statistics.fmean(other)
    if len(reference) < 2 or len(other) < 2:
        return Difference(**{**base, "test": NO_TEST}, mean=mean, ci=None, p=None,
                          why="fewer than 2 runs in a group and no seed pairs")
    if statistics.stdev(reference) == 0 and statistics.stdev(other) == 0:
        return Difference(**base, mean=mean, ci=(mean, mean), p=None, why="no spread in either group")
    result = stats.ttest_ind(reference, other, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    return Difference(**base, mean=mean, ci=(float(interval.low), float(interval.high)), p=float(result.pvalue))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None entries are not in the family).

    Sorted ascending, the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j)):
    rejecting where the adjusted value is below alpha keeps the family-wise error rate at alpha.
    """
    ranked = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(ranked)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def significant(p_adjusted: float | None) -> bool | None:
    return None if p_adjusted is None else p_adjusted < ALPHA
