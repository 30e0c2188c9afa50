"""Which differences are real: paired differences, CIs, p-values and Holm's adjustment, checked
against values computed here by formula (closed-form t distributions for 1-3 degrees of
freedom, the signed-rank null by enumeration), never by the scipy call under test; the view
built from hand-made records; best-epoch accuracies."""
from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import statistics

import pandas as pd
import pytest

from harness.cli.results import add_table_args, table_main
from harness.errors import UserError
from harness.job.records import best_epoch
from harness.results.against import build_against_table, summary
from harness.results.compare import PAIRED, WELCH, compare, holm
from harness.results.render import render, to_csv
from harness.results.tables import build_table
from tests.test_tables import parse_latex, rec


# ------------------------------------------------------------------ t distribution by formula
def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with 1, 2 or 3 degrees of freedom (closed forms)."""
    t = abs(t)
    if df == 1:
        cdf = 0.5 + math.atan(t) / math.pi
    elif df == 2:
        cdf = 0.5 + t / (2 * math.sqrt(2 + t * t))
    elif df == 3:
        cdf = 0.5 + (t / (math.sqrt(3) * (1 + t * t / 3)) + math.atan(t / math.sqrt(3))) / math.pi
    else:
        raise ValueError(df)
    return 2 * (1 - cdf)


def t_quantile(q: float, df: int) -> float:
    """The q-quantile of Student's t, by bisection on the closed-form CDF."""
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1 - t_two_sided_p(mid, df) / 2 < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def test_closed_forms_agree_with_known_quantiles() -> None:
    """Tables: t(0.975; 1) = 12.706, t(0.975; 2) = 4.303, t(0.975; 3) = 3.182."""
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-3)
    assert t_quantile(0.975, 2) == pytest.approx(4.30265, abs=1e-4)
    assert t_quantile(0.975, 3) == pytest.approx(3.18245, abs=1e-4)


# ------------------------------------------------------------------ the statistics
@pytest.mark.parametrize("diffs", [(-1.30, -0.20, -1.60), (1.0, 2.0, 3.0, 2.0), (-1.55, -1.10, -1.10)])
def test_paired_difference_mean_ci_and_p(diffs) -> None:
    other = [50.0 + i for i in range(len(diffs))]
    reference = [o + d for o, d in zip(other, diffs)]
    got = compare(list(enumerate(reference)), list(enumerate(other)))
    n, df = len(diffs), len(diffs) - 1
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    se = sd / math.sqrt(n)
    half = t_quantile(0.975, df) * se
    assert got.test == PAIRED and got.n_pairs == n and got.left_out == 0
    assert [d for _, d in got.pairs] == pytest.approx(list(diffs))
    assert got.mean == pytest.approx(mean)
    assert got.ci == pytest.approx((mean - half, mean + half), abs=1e-6)
    assert got.p == pytest.approx(t_two_sided_p(mean / se, df), rel=1e-6)
    assert got.wilcoxon_p is None  # fewer than 6 pairs


def test_the_first_cpu_comparisons_hand_analysis() -> None:
    """results/cifar10_cpu_small/README: LAASP vs l1_uniform at 50%, -1.25 ± 0.26, t = -8.3, p about 0.014."""
    got = compare([(0, 46.75), (1, 48.90), (2, 49.10)], [(0, 48.30), (1, 50.00), (2, 50.20)])
    assert got.mean == pytest.approx(-1.25)
    assert got.p == pytest.approx(0.0141, abs=2e-4)


def test_welch_when_seeds_do_not_pair() -> None:
    """Two runs per group, equal spreads: Welch's degrees of freedom are 2(n - 1) = 2, a closed form."""
    ref, oth = [(0, 50.0), (1, 52.0)], [(2, 47.0), (3, 49.0)]
    got = compare(ref, oth)
    assert got.test == WELCH and got.pairs == ()
    var = statistics.variance([50.0, 52.0])  # = the other group's
    se = math.sqrt(var / 2 + var / 2)
    df = (var / 2 + var / 2) ** 2 / (2 * (var / 2) ** 2 / 1)
    assert df == pytest.approx(2)
    assert got.mean == pytest.approx(3.0)
    assert got.p == pytest.approx(t_two_sided_p(3.0 / se, 2), rel=1e-6)
    half = t_quantile(0.975, 2) * se
    assert got.ci == pytest.approx((3.0 - half, 3.0 + half), abs=1e-6)
    # a seed twice in a group cannot be paired either
    assert compare([(0, 1.0), (0, 2.0), (1, 3.0)], [(0, 1.0), (1, 2.0)]).test == WELCH


def test_partner_seeds_only_and_degenerate_cases() -> None:
    got = compare([(0, 1.0), (1, 3.0), (2, 2.0), (5, 9.0)], [(0, 0.5), (1, 2.0), (2, 2.5)])
    assert got.test == PAIRED and [s for s, _ in got.pairs] == [0, 1, 2] and got.left_out == 1
    same = compare([(0, 2.0), (1, 3.0)], [(0, 1.0), (1, 2.0)])  # both +1: t undefined
    assert same.mean == 1.0 and same.p is None and "same amount" in same.why
    one = compare([(0, 2.0)], [(0, 1.0)])
    assert one.p is None and one.why


def signed_rank_p(diffs) -> float:
    """Exact two-sided Wilcoxon signed-rank p (no ties, no zeros) by enumerating every sign pattern."""
    ranks = {abs(d): r for r, d in enumerate(sorted(diffs, key=abs), 1)}
    w_plus = sum(ranks[abs(d)] for d in diffs if d > 0)
    n = len(diffs)
    total = n * (n + 1) // 2
    stat = min(w_plus, total - w_plus)
    count = sum(1 for signs in itertools.product((0, 1), repeat=n)
                if min(s := sum(r for r, on in zip(range(1, n + 1), signs) if on), total - s) <= stat)
    return count / 2 ** n


def test_wilcoxon_from_six_pairs() -> None:
    diffs = [0.3, -0.1, 0.5, 0.9, 0.2, 1.4]
    got = compare([(s, 50 + d) for s, d in enumerate(diffs)], [(s, 50.0) for s in range(6)])
    assert got.wilcoxon_p == pytest.approx(signed_rank_p(diffs))
    assert signed_rank_p([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) == pytest.approx(2 / 64)


def test_holm_on_a_known_set() -> None:
    """Sorted 0.01 < 0.03 < 0.04 < 0.2 of m = 4: 4 x 0.01, max(3 x 0.03, .), max(2 x 0.04, .), 0.2."""
    assert holm([0.01, 0.04, None, 0.03, 0.2]) == pytest.approx([0.04, 0.09, None, 0.09, 0.2])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == [] and holm([None]) == [None]


# ------------------------------------------------------------------ the view
@pytest.fixture
def paired_records():
    """LAASP vs pfec and random at 50%, three seeds, known per-seed differences; pfec also at 30%."""
    out = [rec(None, None, s, 94.0 + s) for s in range(3)]
    out += [rec("laasp", 0.5, s, v, pre_prune={"top1": 20.0 + s}) for s, v in enumerate((92.0, 93.0, 94.5))]
    out += [rec("pfec", 0.5, s, v, pre_prune={"top1": 20.0 + s}) for s, v in enumerate((90.7, 92.8, 93.1))]
    out += [rec("random", 0.5, s, v) for s, v in zip((7, 8), (91.0, 91.5))]  # other seeds: unpaired
    out += [rec("pfec", 0.3, 0, 93.0)]  # no LAASP at 30%: not compared
    return out


def test_view_rows_and_holm_across_them(paired_records) -> None:
    table = build_against_table(paired_records)
    rows = {c.other.pruner: c for c in table.rows}
    assert set(rows) == {"pfec", "random"}
    pfec = rows["pfec"]
    diffs = [92.0 - 90.7, 93.0 - 92.8, 94.5 - 93.1]
    mean = sum(diffs) / 3
    se = statistics.stdev(diffs) / math.sqrt(3)
    assert pfec.diff.test == PAIRED and pfec.diff.mean == pytest.approx(mean)
    assert pfec.diff.p == pytest.approx(t_two_sided_p(mean / se, 2), rel=1e-6)
    assert pfec.same_start == (3, 3)
    random = rows["random"]
    assert random.diff.test == WELCH and random.diff.n_other == 2
    ps = sorted([pfec.diff.p, random.diff.p])
    assert min(pfec.p_holm, random.p_holm) == pytest.approx(min(1, 2 * ps[0]))
    assert max(pfec.p_holm, random.p_holm) == pytest.approx(max(min(1, 2 * ps[0]), ps[1]))
    assert pfec.significant == (pfec.p_holm < 0.05)
    assert "significant at 0.05 after Holm" in summary(table)


def test_view_formats_parse_back(paired_records, tmp_path, capsys) -> None:
    table = build_against_table(paired_records)
    df = pd.read_csv(io.StringIO(to_csv(table)), comment="#")
    row = df[df.other == "pfec"].iloc[0]
    assert row.reference == "laasp" and row.test == PAIRED and row.pairs == 3
    assert row.mean_difference == pytest.approx((1.3 + 0.2 + 1.4) / 3, abs=1e-4)
    assert row.ci_low < row.mean_difference < row.ci_high and row.p_holm >= row.p
    assert df[df.other == "random"].iloc[0].test == WELCH
    md = render(table, "md")
    assert "laasp - pfec" in md and "s0 +1.30, s1 +0.20, s2 +1.40" in md and "Holm" in md
    body = parse_latex(render(table, "latex"))
    assert [b["comparison"] for b in body] == ["laasp - pfec", "laasp - random"]
    # the CLI, on a sweep folder
    (tmp_path / "records").mkdir()
    for i, r in enumerate(paired_records):
        (tmp_path / "records" / f"{i}.json").write_text(json.dumps(r))
    parser = argparse.ArgumentParser()
    add_table_args(parser)
    assert table_main(parser.parse_args([str(tmp_path), "--against"])) == 0
    assert "laasp - pfec" in capsys.readouterr().out
    assert table_main(parser.parse_args([str(tmp_path), "--against", "pfec", "--format", "csv"])) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out), comment="#")
    assert set(df.reference) == {"pfec"} and set(df.other) == {"laasp", "random"}
    assert set(df.target_flops_pct) == {50.0}  # pfec at 30% has nobody to meet
    for argv, words in [(["--against", "nope"], "no successful nope runs"),
                        (["--against", "--compare-paper"], "its own view"),
                        (["--view", "time", "--metric", "best"], "--metric goes with the results view only"),
                        (["--metric", "median"], "unknown --metric")]:
        with pytest.raises(UserError, match=words):
            table_main(parser.parse_args([str(tmp_path), *argv]))


# ------------------------------------------------------------------ best epoch
def history(*points):
    """(phase, test_top1) per epoch."""
    return [{"epoch": i, "schedule_epoch": i - 1, "phase": phase, "test_top1": top1, "test_top5": 90 + i,
             "test_loss": 1.0} for i, (phase, top1) in enumerate(points, 1)]


def test_best_epoch_is_the_final_phase_peak() -> None:
    pruned = history(("train", 80), ("recover", 95), ("finetune", 70), ("finetune", 75), ("finetune", 72))
    best = best_epoch(pruned, pruned=True)
    assert best["top1"] == 75 and best["epoch"] == 4 and best["top5"] == 94 and best["epochs_considered"] == 3
    assert best_epoch(pruned, pruned=False)["top1"] == 95  # an unpruned run's every epoch counts
    ties = history(("train", 70), ("finetune", 71), ("finetune", 71), ("finetune", 60))
    assert best_epoch(ties, pruned=True)["epoch"] == 3  # a tie goes to the later epoch, as model_best does
    no_finetune = history(("train", 70), ("budget", 72), ("budget", 71))
    assert best_epoch(no_finetune, pruned=True)["epochs_considered"] == 2
    assert best_epoch([], pruned=True) is None


def test_table_metric_best(paired_records) -> None:
    for r in paired_records:  # a history whose final-phase peak is 1 point above the final value
        top1 = r["final"]["top1"]
        phase = "train" if r["pruner"] is None else "finetune"
        r["history"] = history(("train", top1 + 5), (phase, top1 + 1), (phase, top1))
    laasp = next(r for r in build_table(paired_records, metric="best").rows if r.pruner == "laasp")
    assert laasp.top1.mean == pytest.approx((92.0 + 93.0 + 94.5) / 3 + 1)
    assert laasp.baseline.mean == pytest.approx(95.0 + 5)  # unpruned: every epoch, the first is best here
    md = render(build_table(paired_records, metric="best"), "md")
    assert "pruned top-1, best epoch (%)" in md and "optimistic" in md and "predate the best field" in md
    df = pd.read_csv(io.StringIO(to_csv(build_table(paired_records, metric="best"))), comment="#")
    assert "best_top1_mean" in df.columns and "top1_mean" not in df.columns
    final = render(build_table(paired_records), "md")
    assert "best epoch" not in final and "last epoch" in final
    view = build_against_table(paired_records, metric="best")
    pfec = next(c for c in view.rows if c.other.pruner == "pfec")
    assert pfec.diff.mean == pytest.approx((1.3 + 0.2 + 1.4) / 3)  # both sides moved by 1
