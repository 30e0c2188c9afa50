"""Where a results folder's wall time went, and how often approximate selection agreed with exact.

The same groups as the comparison table (`harness.results.tables.build_table`), other columns: per run,
the mean wall time and its split into the phases every job records in ``timings``:

- selection: choosing what to prune (LAASP's candidate search, a baseline's scoring and solving);
- approx check: LAASP's shadow search when ``approx_check`` is on (records made before it was
  timed apart count it in selection);
- recovery: LAASP's recovery epochs (phase ``recover``);
- budget top-up: a baseline's extra epochs that match its LAASP twin's budget (phase ``budget``);
- train + fine-tune: the schedule's own epochs (phases ``train`` and ``finetune``);
- other: the rest of the wall time (data loading, model building, final evaluation, latency).

Epoch phases include their per-epoch evaluation and checkpoint. ``approx agreement`` pools the
trace steps of LAASP runs made with ``approx_check``: steps whose approximate pick equals the
exact pick / steps checked. Read with ``run_bench.py table FOLDER --view time``.
"""
from __future__ import annotations

import statistics
from collections import Counter
from typing import Any, Callable, Sequence

from harness.results import load as R
from harness.results.render import check_format, render
from harness.results.tables import NA, Column, Row, Stat, Table, build_table, fmt_pm, group_columns, raw_value

# (column name, record timing keys) in display order; "other" is what none of them covers
PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("selection", ("selection_s",)),
    ("approx check", ("approx_check_s",)),
    ("recovery", ("recover_s",)),
    ("budget top-up", ("budget_s",)),
    ("train + fine-tune", ("train_s", "finetune_s")),
)


def wall_s(rec: dict[str, Any]) -> float | None:
    return R.metric(rec, "wall_time_s")


def phase_s(rec: dict[str, Any], keys: tuple[str, ...]) -> float:
    timings = rec.get("timings") or {}
    return float(sum(timings.get(k, 0.0) for k in keys))


def other_s(rec: dict[str, Any]) -> float | None:
    wall = wall_s(rec)
    return None if wall is None else wall - sum(phase_s(rec, keys) for _, keys in PHASES)


def agreement(runs: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """(steps where the approximate pick equalled the exact one, steps checked) over ``runs``."""
    checked = [step["approx_agrees"] for rec in runs for step in rec.get("trace") or []
               if isinstance(step, dict) and step.get("approx_agrees") is not None]
    return sum(bool(a) for a in checked), len(checked)


def _agreement_counts(r: Row) -> tuple[int | None, int | None]:
    """The row's (agreeing, checked) steps for the csv; (None, None) when nothing was checked."""
    agree, checked = agreement(r.runs)
    return (agree, checked) if checked else (None, None)


def _agreement_cell(r: Row) -> str:
    agree, checked = _agreement_counts(r)
    return NA if checked is None else f"{agree}/{checked} ({100 * agree / checked:.0f}%)"


def _seconds(get: Callable[[dict[str, Any]], float | None]) -> Callable[[Row], Stat]:
    return lambda r: Stat.of(get(rec) for rec in r.runs)


def _share(get: Callable[[dict[str, Any]], float | None]) -> Callable[[Row], float | None]:
    """The phase's fraction of the group's total wall time."""
    def share(r: Row) -> float | None:
        walls = [w for w in (wall_s(rec) for rec in r.runs) if w is not None]
        if not walls or sum(walls) <= 0:
            return None
        return sum(get(rec) or 0.0 for rec in r.runs if wall_s(rec) is not None) / sum(walls)

    return share


def _phase_column(name: str, get: Callable[[dict[str, Any]], float | None], with_share: bool = True) -> Column:
    """Seconds per run (mean ± std) and, in brackets, the phase's share of the group's wall time."""
    key = name.replace(" + ", "_").replace(" ", "_").replace("-", "")
    stat, share = _seconds(get), _share(get)
    csv = ((f"{key}_s_mean", lambda r: raw_value(stat(r).mean, digits=2)),
           (f"{key}_s_std", lambda r: raw_value(stat(r).std, digits=2)))
    if not with_share:
        return Column(f"{name} (s)", lambda r: fmt_pm(stat(r)), csv)

    def cell(r: Row) -> str:
        pct = share(r)
        return fmt_pm(stat(r)) + ("" if pct is None else f" ({100 * pct:.0f}%)")

    return Column(f"{name} (s)", cell, csv + ((f"{key}_pct_of_wall", lambda r: raw_value(share(r), 100, 2)),))


def time_columns() -> list[Column]:
    cols = group_columns() + [
        Column("runs", lambda r: str(r.seeds), (("runs", lambda r: r.seeds),)),
        _phase_column("wall", wall_s, with_share=False),
    ]
    for name, keys in PHASES:
        cols.append(_phase_column(name, (lambda keys: lambda rec: phase_s(rec, keys))(keys)))
    cols += [
        _phase_column("other", other_s),
        Column("approx agreement", _agreement_cell,
               (("approx_agree_steps", lambda r: _agreement_counts(r)[0]),
                ("approx_checked_steps", lambda r: _agreement_counts(r)[1])), numeric=False),
    ]
    return cols


def build_time_table(records: Sequence[dict[str, Any]], rows: Sequence[Row] | None = None) -> Table:
    """The time view of ``records``; pass ``rows`` when the caller has already grouped them."""
    rows = list(build_table(records).rows if rows is None else rows)
    runs = [rec for r in rows for rec in r.runs]
    return Table(rows, _notes(runs), view_columns=time_columns(),
                 caption="Wall time per run and its split into phases; approximate-selection agreement.")


def _notes(runs: Sequence[dict[str, Any]]) -> list[str]:
    notes = [
        "Seconds per run: mean ± sample std (ddof=1) over the group's successful runs; (x%) = the phase's "
        "share of the group's summed wall time. Phases come from each record's timings: selection = choosing "
        "what to prune; approx check = LAASP's shadow search for approx_check (in records made before it was "
        "timed apart, part of selection); recovery = LAASP's recovery epochs; budget top-up = a baseline's "
        "extra epochs matching its LAASP twin; train + fine-tune = the schedule's epochs (each epoch phase "
        "includes its evaluation and checkpoint); other = the rest of the wall time (data, model, final "
        "evaluation, latency).",
    ]
    walls = [w for w in (wall_s(rec) for rec in runs) if w is not None]
    if walls:
        total = sum(walls)
        minutes = {name: sum(phase_s(rec, keys) for rec in runs) for name, keys in PHASES}
        split = [f"{name} {secs / 60:.1f} min ({100 * secs / total:.1f}%)" for name, secs in minutes.items()]
        rest = sum(other_s(rec) or 0.0 for rec in runs)
        notes.append(f"All {len(walls)} runs: {total / 60:.1f} min of run time (summed over runs, not the sweep's "
                     f"wall clock), of which " + ", ".join(split) + f", other {rest / 60:.1f} min "
                     f"({100 * rest / total:.1f}%).")
    checked_runs = [(rec, agree, checked) for rec in runs for agree, checked in [agreement([rec])] if checked]
    if checked_runs:
        agree = sum(a for _, a, _ in checked_runs)
        checked = sum(c for _, _, c in checked_runs)
        per_run = [a / c for _, a, c in checked_runs]
        spread = (f"; per run {100 * min(per_run):.0f}-{100 * max(per_run):.0f}%, median "
                  f"{100 * statistics.median(per_run):.0f}%" if len(per_run) > 1 else "")
        modes = Counter(str(rec.get("selection")) for rec, _, _ in checked_runs)
        applied = ", ".join(f"{mode} search in {n} run(s)" for mode, n in sorted(modes.items()))
        notes.append(f"Approximate vs exact selection (approx_check): the approximate search picked the exact "
                     f"search's (layer, criterion) on {agree} of {checked} steps ({100 * agree / checked:.1f}%) "
                     f"over {len(per_run)} runs{spread}. Picks applied: {applied}.")
    else:
        notes.append("No run was made with approx_check, so approximate-selection agreement is n/a.")
    return notes


def time_table_for_folder(folder, fmt: str = "md") -> str:
    check_format(fmt)  # before reading anything
    return render(build_time_table(R.load_records(folder)), fmt)
