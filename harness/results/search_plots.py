"""Search history of an Optuna sweep: objective per trial, or the Pareto front of two objectives.

Read from ``<sweep>/optuna.db`` (Optuna's RDB storage, sqlite) when it exists: every study in
it gets one figure. Without the database, the records' own ``search`` entries (objective
value(s) and trial number) are used when they have them; with neither, there is no figure.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure

from harness.results import load as R
from harness.results.figures import Plot, new_figure

log = logging.getLogger("harness.results.search_plots")
DB_NAME = "optuna.db"


@dataclass
class SearchTrials:
    """What the figure needs of a study: complete trials' values, failed/pruned trial numbers."""

    name: str
    directions: list[str]                  # "minimize" / "maximize" per objective
    metric_names: list[str]
    complete: list[tuple[int, list[float]]]  # (trial number, values)
    other: dict[str, list[int]]            # state name -> trial numbers (failed, pruned, running)
    source: str


def load_optuna_studies(db: str | Path) -> list[SearchTrials]:
    """Every study in an Optuna sqlite storage; [] (with a warning) when it cannot be read."""
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        url = f"sqlite:///{Path(db).resolve()}"
        studies = []
        for name in optuna.get_all_study_names(storage=url):
            study = optuna.load_study(study_name=name, storage=url)
            directions = [d.name.lower() for d in study.directions]
            names = list(getattr(study, "metric_names", None) or [])
            if len(names) != len(directions):
                names = [f"objective {i}" for i in range(len(directions))] if len(directions) > 1 else ["objective"]
            complete, other = [], {}
            for t in study.get_trials(deepcopy=False):
                if t.state.name == "COMPLETE" and t.values is not None:
                    complete.append((t.number, [float(v) for v in t.values]))
                else:
                    other.setdefault(t.state.name.lower(), []).append(t.number)
            studies.append(SearchTrials(name, directions, names, complete, other, str(db)))
        return studies
    except Exception as exc:  # an unreadable or foreign database must not stop a report
        log.warning("cannot read %s as an Optuna storage (%s: %s); no search history", db, type(exc).__name__, exc)
        return []


def trials_from_records(records: Sequence[dict[str, Any]]) -> SearchTrials | None:
    """The records' ``search`` entries ({value or values, number[, directions, metric_names]})."""
    complete, other = [], {}
    directions: list[str] = []
    names: list[str] = []
    for rec in records:
        search = rec.get("search")
        if not isinstance(search, dict):
            continue
        number = search.get("number", search.get("trial_number", search.get("trial")))
        values = search.get("values")
        if values is None and search.get("value", search.get("objective")) is not None:
            values = [search.get("value", search.get("objective"))]
        directions = search.get("directions") or ([search["direction"]] if search.get("direction") else directions)
        names = search.get("metric_names") or names
        if not isinstance(number, int):
            continue
        if R.is_ok(rec) and values and all(isinstance(v, (int, float)) for v in values):
            complete.append((number, [float(v) for v in values]))
        else:
            other.setdefault("failed", []).append(number)
    if not complete and not other:
        return None
    k = len(complete[0][1]) if complete else 1
    if len(names) != k:
        names = ["objective"] if k == 1 else [f"objective {i}" for i in range(k)]
    if len(directions) != k:
        directions = ["?"] * k
    sweep = next((r.get("sweep") for r in records if r.get("sweep")), "sweep")
    return SearchTrials(str(sweep), directions, names, sorted(complete), other, "records' search entries")


def _best_so_far(values: list[float], direction: str) -> list[float]:
    out, best = [], None
    for v in values:
        if best is None or (v > best if direction == "maximize" else v < best):
            best = v
        out.append(best)
    return out


def pareto_2d(points: list[tuple[int, list[float]]], directions: list[str]) -> list[tuple[int, list[float]]]:
    """Non-dominated trials of a two-objective study under its directions."""
    sign = [1.0 if d == "maximize" else -1.0 for d in directions]

    def better_eq(a, b):  # a at least as good as b on every objective
        return all(s * x >= s * y for s, x, y in zip(sign, a, b))

    front = [p for p in points if not any(better_eq(q[1], p[1]) and q[1] != p[1] for q in points)]
    return sorted(front, key=lambda p: p[1][0])


def search_figure(trials: SearchTrials) -> Figure:
    fig = new_figure(7.5, 4.6)
    ax = fig.add_subplot()
    n_other = sum(len(v) for v in trials.other.values())
    others = ", ".join(f"{len(v)} {k}" for k, v in sorted(trials.other.items()))
    total = len(trials.complete) + n_other
    subtitle = f"{total} trials: {len(trials.complete)} complete" + (f", {others}" if others else "")
    if len(trials.metric_names) == 2 and trials.complete:
        xs = [v[0] for _, v in trials.complete]
        ys = [v[1] for _, v in trials.complete]
        sc = ax.scatter(xs, ys, c=[n for n, _ in trials.complete], cmap="viridis", s=28, label="complete trial")
        fig.colorbar(sc, ax=ax, label="trial number")
        if "?" not in trials.directions:
            front = pareto_2d(trials.complete, trials.directions)
            ax.plot([v[0] for _, v in front], [v[1] for _, v in front], "o-", mfc="none", ms=11, color="crimson",
                    label=f"Pareto front ({len(front)} trials)")
        ax.set_xlabel(f"{trials.metric_names[0]} ({trials.directions[0]})")
        ax.set_ylabel(f"{trials.metric_names[1]} ({trials.directions[1]})")
        ax.set_title(f"Search {trials.name}: two objectives\n{subtitle}", fontsize=10)
    else:
        direction = trials.directions[0]
        nums = [n for n, _ in trials.complete]
        vals = [v[0] for _, v in trials.complete]
        ax.scatter(nums, vals, s=22, color="C0", label=f"{trials.metric_names[0]} of a complete trial")
        if direction in ("minimize", "maximize") and vals:
            ax.step(nums, _best_so_far(vals, direction), where="post", color="C3", label=f"best so far ({direction})")
        for k, (state, numbers) in enumerate(sorted(trials.other.items())):
            ax.scatter(numbers, [min(vals) if vals else 0.0] * len(numbers), marker="x", color=f"C{k + 4}",
                       label=f"{state} trial (no value)")
        ax.set_xlabel("trial number")
        ax.set_ylabel(f"{trials.metric_names[0]}" + (f" ({direction})" if direction != "?" else ""))
        ax.set_title(f"Search {trials.name}: objective per trial\n{subtitle}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def search_history(folder: str | Path, records: Sequence[dict[str, Any]] = ()) -> list:
    """`harness.results.figures.Plot`s of the folder's search(es): one per Optuna study, else from records."""
    db = Path(folder) / DB_NAME
    studies = load_optuna_studies(db) if db.is_file() else []
    if not studies:
        from_records = trials_from_records(records)
        studies = [from_records] if from_records is not None else []
    plots = []
    for i, trials in enumerate(studies):
        two = len(trials.metric_names) == 2
        caption = (f"From {trials.source}. " + (
            "Each dot is a complete trial (colour: trial number); the ringed line joins the non-dominated trials."
            if two else "Each dot is a complete trial's objective value; the step line is the best value so far; "
                        "crosses mark trials that ended without a value."))
        suffix = f"_{i}" if len(studies) > 1 else ""
        plots.append(Plot(f"search_history{suffix}", f"Search history: {trials.name}", caption, search_figure(trials)))
    return plots
