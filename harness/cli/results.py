"""``run_bench.py table``, ``report`` and ``plots``: a results folder's table, HTML report and figures.

All three read only the records of the folder (``records/*.json`` of a sweep, or ``*/record.json``
of single runs); see `harness.results.tables`, `harness.results.time_split`, `harness.results.report` and `harness.results.plots`.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from harness.cli.commands import command
from harness.errors import UserError


def add_table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="results folder: results/<sweep> (records/*.json) or a tree of */record.json")
    # not argparse choices: an unknown format must be one `error:` line (UserError), like every bad input
    p.add_argument("--format", default="md", metavar="{md,csv,latex}",
                   help="md (default; Markdown with notes), csv (one column per number, notes as # lines), latex")
    p.add_argument("--out", metavar="FILE", help="write the table to FILE instead of printing it")
    p.add_argument("--compare-paper", action="store_true",
                   help="add the paper's LAASP results (harness/results/paper.py) beside each row, with the "
                        "differences; the paper's accuracies are best-epoch ones, so ours are too (--metric best)")
    p.add_argument("--metric", metavar="{final,best}",
                   help="final (default): each run's last-epoch test accuracy; best: the best test epoch of the "
                        "final phase, the papers' convention (selected on the test set: optimistic)")
    p.add_argument("--against", nargs="?", const="laasp", metavar="PRUNER",
                   help="the comparison view: PRUNER (default laasp) minus every other pruner at the same model, "
                        "dataset and target, paired by seed, with 95%% CIs and Holm-adjusted p-values")
    p.add_argument("--view", default="results", metavar="{results,time}",
                   help="results (default): accuracy, FLOPs, speed-up; time: wall time per run split into "
                        "selection, recovery, budget top-up and training, plus approximate-selection agreement")


VIEWS = ("results", "time")


def table_main(args: argparse.Namespace) -> int:
    from harness.results.load import write_text_atomic
    from harness.results.against import against_table_for_folder
    from harness.results.tables import resolve_metric, table_for_folder
    from harness.results.time_split import time_table_for_folder

    if args.view not in VIEWS:
        raise UserError(f"unknown --view {args.view!r}; use one of {', '.join(VIEWS)}")
    given = [flag for flag, value in (("--compare-paper", args.compare_paper), ("--metric", args.metric),
                                      ("--against", args.against)) if value]
    if args.view == "time" and given:
        raise UserError(f"{' and '.join(given)} {'goes' if len(given) == 1 else 'go'} with the results view only; "
                        f"drop {'it' if len(given) == 1 else 'them'} or use --view results")
    if args.against and args.compare_paper:
        raise UserError("--against is its own view (pruner against pruner); drop --compare-paper, or run the two "
                        "tables separately")
    metric = resolve_metric(args.metric, args.compare_paper)
    if args.view == "time":
        text = time_table_for_folder(args.folder, args.format)
    elif args.against:
        text = against_table_for_folder(args.folder, args.format, args.against, metric)
    else:
        text = table_for_folder(args.folder, args.format, compare_paper=args.compare_paper, metric=metric)
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
    from harness.results.report import write_report

    if args.out and Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a folder; give a file name such as {Path(args.out) / 'report.html'}")
    path = write_report(args.folder, args.out, args.title)
    print(f"report: {path.resolve()}")
    return 0


PLOT_FORMATS = ("png", "pdf", "svg")


def add_plots_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="results folder: results/<sweep> (records/*.json) or a tree of */record.json")
    p.add_argument("--out", metavar="DIR", help="where to write the figures (default: <folder>/plots/)")
    p.add_argument("--format", default="png", metavar="{png,pdf,svg}",
                   help="png (default, 150 dpi), or pdf / svg (vector, for papers)")


def plots_main(args: argparse.Namespace) -> int:
    from harness.job.records import ensure_writable_folder
    from harness.results.plots import all_plots
    from harness.results.load import load_records, write_bytes_atomic

    if args.format not in PLOT_FORMATS:
        raise UserError(f"unknown --format {args.format!r}; use one of {', '.join(PLOT_FORMATS)}")
    out = Path(args.out) if args.out else Path(args.folder) / "plots"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    records = load_records(args.folder)
    plots = all_plots(records, args.folder)
    if not plots:
        raise UserError(f"{args.folder}: the records hold nothing to plot (no successful runs)")
    ensure_writable_folder(out, "--out")
    for plot in plots:
        buf = io.BytesIO()
        # metadata without a date, so an unchanged folder redraws byte-identical files
        plot.figure.savefig(buf, format=args.format, dpi=150, metadata=_STABLE_METADATA[args.format])
        path = write_bytes_atomic(out / f"{plot.name}.{args.format}", buf.getvalue())
        print(f"plot: {path.resolve()}  ({plot.title})")
    return 0


_STABLE_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None},
                    "svg": {"Date": None}}


def add_migrate_args(p: argparse.ArgumentParser) -> None:
    p.description = ("Rewrite the absolute machine paths in records, sweep.json and run records under each FOLDER "
                     "into the portable form new ones have (relative to the results folder or the repository). "
                     "Then regenerate the report (run_bench.py report FOLDER).")
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="results folder, e.g. results/quick")


def migrate_main(args: argparse.Namespace) -> int:
    from harness.results.portable import migrate_folder

    for folder in args.folders:
        if not Path(folder).is_dir():
            raise UserError(f"{folder}: no such folder; pass a results folder such as results/<sweep>")
    for folder in args.folders:
        changed = migrate_folder(folder)
        for path, changes in changed.items():
            print(f"{path}: {len(changes)} path(s)")
            for old, new in dict.fromkeys(changes):
                print(f"  {old} -> {new}")
        print(f"migrate-paths: {folder}: {len(changed)} file(s) rewritten")
    return 0


command("table", "comparison table of a results folder (md, csv or latex), computed from its records")(
    (add_table_args, table_main))
command("report", "self-contained HTML report of a results folder: table, figures, how the numbers were made")(
    (add_report_args, report_main))
command("plots", "the report's figures as files (png, pdf or svg) in <folder>/plots/")((add_plots_args, plots_main))
command("migrate-paths", "rewrite absolute machine paths in a results folder's records and sweep.json as relative ones")(
    (add_migrate_args, migrate_main))
