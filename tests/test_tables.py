"""The comparison table from hand-made records with known values: statistics, grouping, formats."""
from __future__ import annotations

import argparse
import io
import json
import math
import statistics

import pandas as pd
import pytest

from harness.errors import UserError
from harness.cli.results import add_table_args, table_main
from harness.results.render import render, to_csv, to_latex, to_markdown
from harness.results.tables import build_table


def rec(pruner, target, seed, top1, top5=99.0, flops=0.0, params=0.0, epochs=10, model="resnet20",
        dataset="digits", status=None, error=None, latency=None, **extra):
    """A record with just the fields the table reads (``final`` left out for a failed trial)."""
    r = {"model": model, "dataset": dataset, "pruner": pruner, "seed": seed,
         "config": {"model": model, "epochs": epochs, "seed": seed, "data": {"dataset": dataset},
                    "pruner": pruner, "pruner_config": None if pruner is None else {"target_flops": target}},
         "flops_counter": "test counter"}
    if status == "failed":
        r.update(status="failed", error=error, trial_id=f"{pruner}-{seed}")
        return r
    r.update(final={"top1": top1, "top5": top5, "loss": 0.1}, flops={"before": 100, "after": 0, "reduction": flops},
             params={"reduction": params}, epochs_trained=epochs, **extra)
    if pruner is not None:
        r.update(target_flops=target, target_reached=True)
    if latency is not None:
        r["latency"] = {"device": "cpu (test)", "method": "median of 3",
                        "batch_1": {"speedup": latency[0]}, "batch_64": {"speedup": latency[1]}}
    if status:
        r["status"] = status
    return r


@pytest.fixture
def records():
    return [
        rec(None, None, 0, 93.0, top5=99.5, epochs=12),
        rec(None, None, 1, 94.0, top5=99.6, epochs=12),
        rec(None, None, 2, 95.0, top5=99.7, epochs=12),
        rec("laasp", 0.5, 0, 92.0, top5=98.0, flops=0.51, params=0.40, epochs=14, latency=(1.2, 1.6)),
        rec("laasp", 0.5, 1, 93.0, top5=98.5, flops=0.53, params=0.42, epochs=16, latency=(1.4, 1.8)),
        rec("laasp", 0.5, 2, None, status="failed", error="RuntimeError: out of memory\n  at step 3"),
        rec("fpgm", 0.5, 0, 90.0, top5=97.0, flops=0.50, params=0.45, epochs=12),
        rec("laasp", 0.7, 0, 88.0, flops=0.70, epochs=15),
        rec("l1_uniform", 0.7, 0, None, status="failed", error="ValueError: target unreachable"),
        rec("laasp", 0.5, 0, 60.0, flops=0.5, dataset="cifar10"),  # no unpruned runs of cifar10
    ]


def by_key(table):
    return {(r.model, r.dataset, r.pruner, r.target): r for r in table.rows}


def test_grouping_mean_std_and_drop_are_exact(records) -> None:
    rows = by_key(build_table(records))
    assert len(rows) == 6
    base = rows[("resnet20", "digits", None, None)]
    assert base.top1.mean == pytest.approx(94.0) and base.top1.std == pytest.approx(1.0)  # ddof=1
    assert base.seeds == 3 and base.drop == 0.0 and base.epochs == (12, 12)
    laasp = rows[("resnet20", "digits", "laasp", 0.5)]
    assert laasp.seeds == 2 and len(laasp.failed) == 1
    assert laasp.top1.mean == pytest.approx(92.5)
    assert laasp.top1.std == pytest.approx(statistics.stdev([92.0, 93.0])) == pytest.approx(math.sqrt(0.5))
    assert laasp.baseline.mean == pytest.approx(94.0) and laasp.baseline.std == pytest.approx(1.0)
    assert laasp.drop == pytest.approx(1.5)  # computed from the two means
    assert laasp.top5.mean == pytest.approx(98.25)
    assert laasp.flops_reduction.mean == pytest.approx(0.52) and laasp.params_reduction.mean == pytest.approx(0.41)
    assert laasp.speedup[1].mean == pytest.approx(1.3) and laasp.speedup[64].mean == pytest.approx(1.7)
    assert laasp.epochs == (14, 16)
    fpgm = rows[("resnet20", "digits", "fpgm", 0.5)]
    assert fpgm.seeds == 1 and fpgm.top1.std is None and fpgm.drop == pytest.approx(4.0)  # one seed: std n/a
    only_failed = rows[("resnet20", "digits", "l1_uniform", 0.7)]
    assert only_failed.seeds == 0 and len(only_failed.failed) == 1 and only_failed.top1.mean is None
    cifar = rows[("resnet20", "cifar10", "laasp", 0.5)]
    assert cifar.baseline.mean is None and cifar.drop is None


def test_markdown_shows_everything_and_parses_back(records) -> None:
    table = build_table(records)
    text = to_markdown(table)
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    body = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]
    assert len(body) == len(table.rows)
    rows = {(b["dataset"], b["pruner"], b["target FLOPs red. (%)"]): b for b in body}
    laasp = rows[("digits", "laasp", "50.00")]
    mean, std = (float(v) for v in laasp["pruned top-1 (%)"].split("±"))
    assert (mean, std) == (92.50, round(math.sqrt(0.5), 2))
    assert laasp["baseline top-1 (%)"] == "94.00 ± 1.00"
    assert float(laasp["top-1 drop (pt)"]) == 1.50
    assert laasp["pruned top-5 (%)"] == "98.25 ± 0.35"
    assert float(laasp["FLOPs red. (%)"]) == 52.0 and float(laasp["params red. (%)"]) == 41.0
    assert float(laasp["speed-up b1 (x)"]) == 1.3 and float(laasp["speed-up b64 (x)"]) == 1.7
    assert (laasp["seeds"], laasp["failed"], laasp["epochs"]) == ("2", "1", "14-16")
    assert rows[("digits", "fpgm", "50.00")]["pruned top-1 (%)"] == "90.00 ± n/a"
    assert rows[("digits", "fpgm", "50.00")]["speed-up b1 (x)"] == "n/a"
    failed_only = rows[("digits", "l1_uniform", "70.00")]
    assert (failed_only["seeds"], failed_only["failed"], failed_only["pruned top-1 (%)"]) == ("0", "1", "n/a")
    assert rows[("cifar10", "laasp", "50.00")]["baseline top-1 (%)"] == "n/a"
    assert rows[("digits", "unpruned", "n/a")]["pruned top-1 (%)"] == "94.00 ± 1.00"
    notes = text.split("Notes:")[1]
    assert "No unpruned runs of resnet20 on cifar10" in notes
    assert "2 failed run(s)" in notes and "RuntimeError: out of memory at step 3" in notes  # one line each
    assert "ValueError: target unreachable" in notes
    assert "ddof=1" in notes and "test counter" in notes and "cpu (test)" in notes


def test_csv_parses_back_to_the_same_numbers(records) -> None:
    table = build_table(records)
    df = pd.read_csv(io.StringIO(to_csv(table)), comment="#")
    assert len(df) == len(table.rows)
    row = df[(df.pruner == "laasp") & (df.dataset == "digits") & (df.target_flops_pct == 50.0)].iloc[0]
    assert row.top1_mean == 92.5 and row.top1_std == pytest.approx(math.sqrt(0.5), abs=1e-4)
    assert row.baseline_top1_mean == 94.0 and row.baseline_top1_std == 1.0 and row.baseline_runs == 3
    assert row.top1_drop == 1.5 and row.top5_mean == 98.25
    assert row.flops_reduction_pct == 52.0 and row.params_reduction_pct == 41.0
    assert row.speedup_b1 == 1.3 and row.speedup_b64 == 1.7
    assert (row.seeds, row.failed, row.epochs_min, row.epochs_max) == (2, 1, 14, 16)
    fpgm = df[df.pruner == "fpgm"].iloc[0]
    assert fpgm.top1_mean == 90.0 and math.isnan(fpgm.top1_std) and fpgm.top1_drop == 4.0
    failed_only = df[df.pruner == "l1_uniform"].iloc[0]
    assert failed_only.seeds == 0 and failed_only.failed == 1 and math.isnan(failed_only.top1_mean)
    assert math.isnan(df[df.dataset == "cifar10"].iloc[0].baseline_top1_mean)


def parse_latex(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    start, mid, end = lines.index("\\toprule"), lines.index("\\midrule"), lines.index("\\bottomrule")

    def cells(line):
        line = line.removesuffix("\\\\").strip()
        return [c.strip().replace("$\\pm$", "±").replace("\\_", "_").replace("\\%", "%") for c in line.split(" & ")]

    header = cells(lines[start + 1])
    assert mid == start + 2
    return [dict(zip(header, cells(line))) for line in lines[mid + 1:end]]


def test_latex_parses_back_to_the_same_numbers(records) -> None:
    table = build_table(records)
    text = to_latex(table)
    assert text.count("\\begin{tabular}") == 1 and "\\end{table}" in text
    body = parse_latex(text)
    assert len(body) == len(table.rows)
    laasp = next(b for b in body if b["pruner"] == "laasp" and b["dataset"] == "digits"
                 and b["target FLOPs red. (%)"] == "50.00")
    assert laasp["pruned top-1 (%)"] == "92.50 ± 0.71" and laasp["top-1 drop (pt)"] == "1.50"
    assert laasp["baseline top-1 (%)"] == "94.00 ± 1.00" and laasp["failed"] == "1"
    assert any(b["pruner"] == "l1_uniform" for b in body)  # escaped underscore round-trips
    assert "No unpruned runs of resnet20 on cifar10" in text


def test_compare_paper_computes_the_paper_drop(records) -> None:
    # the paper's numbers are best-epoch ones, so the comparison reads ours at the best epoch (`best`),
    # here 1 point above the final-epoch ones, which it must not use
    best = lambda v: {"best": {"top1": v, "top5": 99.0, "epoch": 5}}
    ours = [rec(None, None, s, v - 1, model="resnet56", dataset="cifar10", **best(v))
            for s, v in enumerate((93.5, 93.7))]
    ours += [rec("laasp", 0.55, s, v - 1, model="resnet56", dataset="cifar10", flops=0.53, **best(v))
             for s, v in enumerate((93.0, 93.2))]
    table = build_table(ours, compare_paper=True)
    assert table.metric == "best" and "best-epoch numbers" in " ".join(table.notes)
    row = next(r for r in table.rows if r.pruner == "laasp")
    assert row.paper is not None and row.paper.flops_reduction == 0.526
    df = pd.read_csv(io.StringIO(to_csv(table)), comment="#")
    laasp = df[df.pruner == "laasp"].iloc[0]
    assert laasp.paper_top1 == 93.04 and laasp.paper_baseline_top1 == 93.61
    assert laasp.paper_drop == pytest.approx(0.57)  # computed, not the seed table's 0.12
    assert laasp.delta_top1 == pytest.approx(93.1 - 93.04, abs=1e-4)
    assert laasp.delta_drop == pytest.approx((93.6 - 93.1) - 0.57, abs=1e-4)
    base = df[df.pruner == "unpruned"].iloc[0]
    assert base.delta_baseline == pytest.approx(93.6 - 93.61, abs=1e-4) and math.isnan(base.paper_top1)
    md = render(table, "md")
    assert "paper top-1 (%)" in md and "Image and Vision Computing" in md and "pruned top-1, best epoch" in md
    with pytest.raises(UserError, match="best-epoch"):
        build_table(ours, compare_paper=True, metric="final")
    assert "paper top-1 (%)" not in render(build_table(ours), "md")


def test_sweep_folder_and_single_run_tree(tmp_path, records, capsys) -> None:
    sweep = tmp_path / "sweep"
    (sweep / "records").mkdir(parents=True)
    for i, r in enumerate(records):
        (sweep / "records" / f"trial_{i}.json").write_text(json.dumps(r))
    (sweep / "stray").mkdir()
    (sweep / "stray" / "record.json").write_text(json.dumps(records[0]))  # not read: records/ wins
    parser = argparse.ArgumentParser()
    add_table_args(parser)
    assert table_main(parser.parse_args([str(sweep), "--format", "csv"])) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out), comment="#")
    assert df[df.pruner == "unpruned"].iloc[0].seeds == 3
    tree = tmp_path / "runs"
    for i, r in enumerate(records[:4]):
        (tree / f"run{i}").mkdir(parents=True)
        (tree / f"run{i}" / "record.json").write_text(json.dumps(r))
    out = tmp_path / "table.tex"
    assert table_main(parser.parse_args([str(tree), "--format", "latex", "--out", str(out)])) == 0
    assert str(out.resolve()) in capsys.readouterr().out
    assert len(parse_latex(out.read_text())) == 2


@pytest.mark.parametrize("argv,words", [
    (["{tmp}", "--format", "xlsx"], ["unknown --format 'xlsx'", "md, csv, latex"]),
    (["{tmp}"], ["no records found", "results/<sweep>"]),
    (["{tmp}/missing"], ["no such folder"]),
    (["{sweep}", "--out", "{tmp}/no/such/dir/t.md"], ["does not exist"]),
])
def test_bad_input_is_one_user_error(tmp_path, records, argv, words) -> None:
    sweep = tmp_path / "sweep" / "records"
    sweep.mkdir(parents=True)
    (sweep / "a.json").write_text(json.dumps(records[0]))
    parser = argparse.ArgumentParser()
    add_table_args(parser)
    args = parser.parse_args([a.format(tmp=tmp_path / "empty", sweep=sweep.parent) for a in argv])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as exc:
        table_main(args)
    message = str(exc.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_not_a_record_is_named(tmp_path) -> None:
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json"):
        build_table_from(tmp_path)


def build_table_from(folder):
    from harness.results.load import load_records

    return build_table(load_records(folder))


def test_runs_that_pruned_after_training_are_named_in_the_notes() -> None:
    """Taylor's fallback (too few minibatches for its iterations) prunes the rest unrecovered: the
    row's notes say how many runs did, so a collapse is not read as the method's."""
    runs = [rec("taylor", 0.5, 0, 12.0, flops=0.5, finished_in_training=False),
            rec("taylor", 0.5, 1, 46.0, flops=0.5, finished_in_training=True),
            rec("hrank", 0.5, 0, 45.0, flops=0.5)]
    notes = build_table(runs).notes
    assert [n for n in notes if "finished_in_training" in n] == [
        "resnet20/digits taylor target 50%: 1 of 2 runs ended training before their last pruning iteration and "
        "pruned the rest after it, with no fine-tuning (finished_in_training false)."]
