"""The time-split view: phase seconds and shares, approx agreement, formats and CLI errors."""
from __future__ import annotations

import argparse
import io
import json

import pandas as pd
import pytest

from harness.errors import UserError
from harness.cli.results import add_table_args, table_main
from harness.results.time_split import agreement, build_time_table
from harness.results.render import render
from tests.test_tables import rec


def timed(pruner, target, seed, wall, agrees=(), selection="exact", **timings):
    r = rec(pruner, target, seed, 90.0, wall_time_s=wall, timings=timings, selection=selection)
    r["trace"] = [{"step": i, "approx_agrees": a} for i, a in enumerate(agrees)]
    return r


@pytest.fixture
def records():
    return [
        timed(None, None, 0, 100.0, train_s=90.0),
        timed("laasp", 0.5, 0, 200.0, agrees=(True, True, False, None), train_s=30.0, selection_s=80.0,
              approx_check_s=6.0, recover_s=20.0, finetune_s=60.0),
        timed("laasp", 0.5, 1, 300.0, agrees=(True, True), train_s=30.0, selection_s=160.0, recover_s=40.0,
              finetune_s=60.0),
        timed("fpgm", 0.5, 0, 150.0, train_s=30.0, selection_s=1.0, budget_s=30.0, finetune_s=80.0),
    ]


def csv_rows(text):
    df = pd.read_csv(io.StringIO(text), comment="#")
    return {(r.pruner, r.target_flops_pct if r.target_flops_pct == r.target_flops_pct else None): r
            for r in df.itertuples()}


def test_phase_seconds_shares_and_other_are_exact(records) -> None:
    rows = csv_rows(render(build_time_table(records), "csv"))
    laasp = rows[("laasp", 50.0)]
    assert laasp.runs == 2 and laasp.wall_s_mean == 250.0
    assert laasp.selection_s_mean == 120.0 and laasp.selection_s_std == pytest.approx(56.57, abs=0.01)
    assert laasp.selection_pct_of_wall == 48.0          # 240 of 500 s
    assert laasp.recovery_s_mean == 30.0 and laasp.recovery_pct_of_wall == 12.0
    assert laasp.train_finetune_s_mean == 90.0           # train + finetune
    assert laasp.approx_check_s_mean == 3.0 and laasp.approx_check_pct_of_wall == 1.2
    assert laasp.other_s_mean == 7.0                     # (200 - 80 - 6 - 20 - 90 + 300 - 160 - 40 - 90) / 2
    assert (laasp.approx_agree_steps, laasp.approx_checked_steps) == (4, 5)  # None steps are not checked
    fpgm = rows[("fpgm", 50.0)]
    assert fpgm.budget_topup_s_mean == 30.0 and fpgm.other_s_mean == 9.0 and fpgm.recovery_s_mean == 0.0
    unpruned = rows[("unpruned", None)]
    assert unpruned.train_finetune_pct_of_wall == 90.0 and pd.isna(unpruned.approx_checked_steps)


def test_markdown_has_share_and_notes_with_totals(records) -> None:
    text = render(build_time_table(records), "md")
    line = next(l for l in text.splitlines() if "| laasp |" in l)
    assert "120.00 ± 56.57 (48%)" in line and "4/5 (80%)" in line
    # 750 s summed; selection 241 s
    assert "All 4 runs: 12.5 min" in text and "selection 4.0 min (32.1%)" in text
    assert "on 4 of 5 steps (80.0%) over 2 runs; per run 67-100%" in text
    assert "Picks applied: exact search in 2 run(s)." in text


def test_no_approx_check_says_so(records) -> None:
    for r in records:
        r["trace"] = []
    text = render(build_time_table(records), "md")
    assert "agreement is n/a" in text
    assert agreement(records) == (0, 0)


def test_latex_caption_is_the_views(records) -> None:
    assert "Wall time per run" in render(build_time_table(records), "latex")


def test_cli_view_time_and_errors(tmp_path, records, capsys) -> None:
    (tmp_path / "records").mkdir()
    for i, r in enumerate(records):
        (tmp_path / "records" / f"{i}.json").write_text(json.dumps(r))
    parser = argparse.ArgumentParser()
    add_table_args(parser)
    assert table_main(parser.parse_args([str(tmp_path), "--view", "time"])) == 0
    assert "approx agreement" in capsys.readouterr().out
    for argv, words in ((["--view", "speed"], "unknown --view 'speed'"),
                        (["--view", "time", "--compare-paper"], "--compare-paper goes with the results view"),
                        (["--view", "time", "--format", "xlsx"], "unknown --format 'xlsx'")):
        with pytest.raises(UserError, match=words):
            table_main(parser.parse_args([str(tmp_path), *argv]))
