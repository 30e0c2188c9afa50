"""The comparison view (``table DIR --against PRUNER``): one pruner against every other one.

For every other pruned group of the same model, dataset and FLOPs target as a group of
``against`` (default ``laasp``), one row: the per-seed differences ``against - other`` of the
chosen accuracy (final epoch, or best with ``--metric best``), their mean, 95% confidence
interval and p-value (`harness.results.compare`), Holm-adjusted across the rows of the view.
This view, and only this view, calls a difference significant. The same groups as the
comparison table (`harness.results.tables.build_table`); md, csv and LaTeX through
`harness.results.render`, HTML in the report.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from harness.errors import UserError
from harness.results import load as R
from harness.results.compare import (ALPHA, CONFIDENCE, PAIRED, WILCOXON_MIN_PAIRS, Difference, compare, holm,
                                     significant)
from harness.results.render import check_format, render
from harness.results.tables import NA, Column, Row, Table, build_table, fmt_pct, metric_note, raw_value

DEFAULT_AGAINST = "laasp"


@dataclass
class Comparison:
    """One row of the view: ``reference`` (the ``against`` group) minus ``other``."""

    reference: Row
    other: Row
    diff: Difference
    metric: str
    p_holm: float | None = None
    wilcoxon_holm: float | None = None
    same_start: tuple[int, int] = (0, 0)  # pairs whose pre-prune accuracy is equal, pairs that record it

    @property
    def significant(self) -> bool | None:
        return significant(self.p_holm)

    @property
    def name(self) -> str:
        return f"{self.reference.pruner} - {self.other.pruner}"


def build_against_table(records: Sequence[dict[str, Any]], against: str = DEFAULT_AGAINST,
                        metric: str = "final") -> Table:
    rows = build_table(records, metric=metric).rows
    pruners = sorted({r.pruner for r in rows if r.pruner is not None and r.runs})
    if against not in pruners:
        raise UserError(f"--against {against}: no successful {against} runs in these records; "
                        f"use one of {', '.join(pruners) or '(none: no pruned runs)'}")
    comparisons = []
    for ref in (r for r in rows if r.pruner == against and r.runs):
        for other in rows:
            if other.pruner in (None, against) or (other.model, other.dataset, other.target) != \
                    (ref.model, ref.dataset, ref.target):
                continue
            diff = compare(_values(ref, metric), _values(other, metric))
            comparisons.append(Comparison(ref, other, diff, metric, same_start=_same_start(ref, other, diff)))
    for c, p in zip(comparisons, holm([c.diff.p for c in comparisons])):
        c.p_holm = p
    for c, p in zip(comparisons, holm([c.diff.wilcoxon_p for c in comparisons])):
        c.wilcoxon_holm = p
    return Table(comparisons, _notes(comparisons, rows, against, metric), metric=metric,  # type: ignore[arg-type]
                 view_columns=against_columns(metric),
                 caption=f"{against} against every other pruner at the same FLOPs target: paired differences, "
                         f"{100 * CONFIDENCE:.0f}% confidence intervals, Holm-adjusted p-values.")


def _values(row: Row, metric: str) -> list[tuple[Any, float | None]]:
    return [(rec.get("seed"), R.accuracy(rec, metric, "top1")) for rec in row.runs]


def _same_start(ref: Row, other: Row, diff: Difference) -> tuple[int, int]:
    """How many pairs started pruning from the same network (equal pre-prune top-1), of those that say."""
    if diff.test != PAIRED:
        return (0, 0)
    pre = [{rec.get("seed"): R.metric(rec, "pre_prune", "top1") for rec in row.runs} for row in (ref, other)]
    known = [(pre[0].get(s), pre[1].get(s)) for s, _ in diff.pairs]
    known = [(a, b) for a, b in known if a is not None and b is not None]
    return sum(1 for a, b in known if a == b), len(known)


def summary(table: Table) -> str:
    """One sentence on what the view finds, for the report's text (the only place it says "significant")."""
    rows: list[Comparison] = table.rows  # type: ignore[assignment]
    tested = [c for c in rows if c.p_holm is not None]
    if not rows:
        return "No pair of groups to compare."
    if not tested:
        return f"None of the {len(rows)} differences could be tested (see the notes)."
    sig = [c for c in tested if c.significant]
    where = lambda c: (f"{c.name} at {fmt_pct(c.reference.target)}% ({c.reference.model}/{c.reference.dataset}): "
                       f"{c.diff.mean:+.2f} pt, Holm p = {c.p_holm:.3g}")
    if not sig:
        return (f"None of the {len(tested)} tested differences is significant at {ALPHA:g} after Holm's adjustment; "
                "with few seeds that is not evidence that the pruners are equal.")
    return (f"{len(sig)} of {len(tested)} tested differences are significant at {ALPHA:g} after Holm's adjustment: "
            + "; ".join(where(c) for c in sig) + ".")


def _notes(comparisons: list[Comparison], rows: list[Row], against: str, metric: str) -> list[str]:
    notes = [
        metric_note(rows, metric),
        f"Each row compares {against} with another pruner of the same model, dataset and FLOPs target: "
        f"difference = {against} - other, in top-1 points (positive: {against} better).",
        f"Paired (test '{PAIRED}'): runs matched by seed (same data order; the same network at the prune point "
        "when both prune at the same epoch); the mean of the per-seed differences, its "
        f"{100 * CONFIDENCE:.0f}% confidence interval (Student's t, n - 1 degrees of freedom) and a two-sided paired "
        f"t-test (scipy.stats.ttest_rel); from {WILCOXON_MIN_PAIRS} pairs on also the Wilcoxon signed-rank test "
        "(scipy.stats.wilcoxon). Groups whose seeds do not pair up are compared with Welch's t-test "
        "(scipy.stats.ttest_ind, equal_var=False) and marked unpaired.",
        f"p Holm: Holm's step-down adjustment over the {sum(c.diff.p is not None for c in comparisons)} rows with a "
        f"p-value (Wilcoxon p-values adjusted as their own family); significant = p Holm < {ALPHA:g}. Only this "
        "adjusted p-value calls a difference significant. With 3 seeds a paired t-test has 2 degrees of freedom: "
        "only large, consistent differences reach it, and 'no' does not mean the pruners are equal.",
    ]
    starts = [c.same_start for c in comparisons if c.same_start[1]]
    if starts:
        same, known = sum(s for s, _ in starts), sum(k for _, k in starts)
        notes.append(f"Same start: in {same} of {known} pairs both runs recorded the same pre-prune top-1 "
                     "(the same network when pruning began).")
    for c in comparisons:
        if c.diff.left_out:
            notes.append(f"{c.name} at {fmt_pct(c.reference.target)}%: {c.diff.left_out} run(s) without a "
                         "partner seed left out of the pairs.")
        if c.diff.why:
            notes.append(f"{c.name} at {fmt_pct(c.reference.target)}%: no p-value ({c.diff.why}).")
    if not comparisons:
        notes.append(f"No other pruner shares a model, dataset and target with {against}: nothing to compare.")
    return notes


def _pairs_text(c: Comparison) -> str:
    if c.diff.test == PAIRED:
        return ", ".join(f"s{s} {d:+.2f}" for s, d in c.diff.pairs)
    return f"unpaired: {c.diff.n_reference} vs {c.diff.n_other} runs"


def _num(x: float | None, fmt: str = ".2f") -> str:
    return NA if x is None else format(x, fmt)


def _ci(c: Comparison) -> str:
    return NA if c.diff.ci is None else f"[{c.diff.ci[0]:+.2f}, {c.diff.ci[1]:+.2f}]"


def _yes_no(value: bool | None) -> str:
    return NA if value is None else ("yes" if value else "no")


def against_columns(metric: str = "final") -> list[Column]:
    best = ", best epoch" if metric == "best" else ""
    return [
        Column("model", lambda c: c.reference.model, (("model", lambda c: c.reference.model),), numeric=False),
        Column("dataset", lambda c: c.reference.dataset, (("dataset", lambda c: c.reference.dataset),),
               numeric=False),
        Column("target FLOPs red. (%)", lambda c: fmt_pct(c.reference.target),
               (("target_flops_pct", lambda c: raw_value(c.reference.target, 100)),)),
        Column("comparison", lambda c: c.name, (("reference", lambda c: c.reference.pruner),
                                                ("other", lambda c: c.other.pruner)), numeric=False),
        Column("test", lambda c: c.diff.test, (("test", lambda c: c.diff.test), ("metric", lambda c: c.metric)),
               numeric=False),
        Column(f"per-seed difference{best} (pt)", _pairs_text,
               (("pairs", lambda c: c.diff.n_pairs), ("n_reference", lambda c: c.diff.n_reference),
                ("n_other", lambda c: c.diff.n_other),
                ("differences", lambda c: ";".join(f"{s}:{d:.4f}" for s, d in c.diff.pairs) or None)),
               numeric=False),
        Column(f"mean difference{best} (pt)", lambda c: _num(c.diff.mean, "+.2f"),
               (("mean_difference", lambda c: raw_value(c.diff.mean)),)),
        Column(f"{100 * CONFIDENCE:.0f}% CI (pt)", _ci,
               (("ci_low", lambda c: raw_value(c.diff.ci and c.diff.ci[0])),
                ("ci_high", lambda c: raw_value(c.diff.ci and c.diff.ci[1])))),
        Column("p", lambda c: _num(c.diff.p, ".3g"), (("p", lambda c: raw_value(c.diff.p, digits=6)),)),
        Column("p Holm", lambda c: _num(c.p_holm, ".3g"), (("p_holm", lambda c: raw_value(c.p_holm, digits=6)),)),
        Column("Wilcoxon p", lambda c: _num(c.diff.wilcoxon_p, ".3g"),
               (("wilcoxon_p", lambda c: raw_value(c.diff.wilcoxon_p, digits=6)),)),
        Column("Wilcoxon p Holm", lambda c: _num(c.wilcoxon_holm, ".3g"),
               (("wilcoxon_p_holm", lambda c: raw_value(c.wilcoxon_holm, digits=6)),)),
        Column(f"significant (Holm, {ALPHA:g})", lambda c: _yes_no(c.significant),
               (("significant", lambda c: c.significant),), numeric=False),
    ]


def against_table_for_folder(folder, fmt: str = "md", against: str = DEFAULT_AGAINST, metric: str = "final") -> str:
    check_format(fmt)  # before reading anything
    return render(build_against_table(R.load_records(folder), against, metric), fmt)
