"""``run_bench.py table`` and ``run_bench.py report``: a results folder's table and HTML report.

Both read only the records of the folder (``records/*.json`` of a sweep, or ``*/record.json``
of single runs); see `harness.tables` and `harness.report`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import UserError


def add_table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="results folder: results/<sweep> (records/*.json) or a tree of */record.json")
    # not argparse choices: an unknown format must be one `error:` line (UserError), like every bad input
    p.add_argument("--format", default="md", metavar="{md,csv,latex}",
                   help="md (default; Markdown with notes), csv (one column per number, notes as # lines), latex")
    p.add_argument("--out", metavar="FILE", help="write the table to FILE instead of printing it")
    p.add_argument("--compare-paper", action="store_true",
                   help="add the paper's LAASP results (harness/paper.py) beside each row, with the differences")
    p.add_argument("--view", default="results", metavar="{results,time}",
                   help="results (default): accuracy, FLOPs, speed-up; time: wall time per run split into "
                        "selection, recovery, budget top-up and training, plus approximate-selection agreement")


VIEWS = ("results", "time")


def table_main(args: argparse.Namespace) -> int:
    from harness.results import write_text_atomic
    from harness.tables import table_for_folder
    from harness.time_split import time_table_for_folder

    if args.view not in VIEWS:
        raise UserError(f"unknown --view {args.view!r}; use one of {', '.join(VIEWS)}")
    if args.view == "time" and args.compare_paper:
        raise UserError("--compare-paper goes with the results view only; drop it or use --view results")
    if args.view == "time":
        text = time_table_for_folder(args.folder, args.format)
    else:
        text = table_for_folder(args.folder, args.format, compare_paper=args.compare_paper)
    if args.out:
        path = write_text_atomic(args.out, text)
        print(f"table: {path.resolve()}")
    else:
        sys.stdout.write(text)
    return 0


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="results folder: results/<sweep> (records/*.json) or a tree of */record.json")
    p.add_argument("--out", metavar="FILE", help="where to write the page (default: <folder>/report.html)")
    p.add_argument("--title", help="page title (default: the folder's name)")


def report_main(args: argparse.Namespace) -> int:
    from harness.report import write_report

    if args.out and Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a folder; give a file name such as {Path(args.out) / 'report.html'}")
    path = write_report(args.folder, args.out, args.title)
    print(f"report: {path.resolve()}")
    return 0
