"""The comparison table, computed from records alone, in the seed table's form and more.

Rows are groups of runs with the same (model, dataset, pruner, target FLOPs reduction); the
unpruned runs (``pruner`` null) of a model and dataset form their own row and are the
baseline of every pruned row of that model and dataset. Per group:

- baseline top-1, pruned top-1, pruned top-5: mean ± sample standard deviation (ddof=1) over
  the group's successful runs (one per seed). With a single run the std is undefined and
  shown as ``n/a`` (empty in CSV), never as 0. Accuracies are final-epoch ones, or with
  ``metric="best"`` the best test epoch of the final phase (the papers'; labelled optimistic).
- top-1 drop = baseline mean - pruned mean, computed here (positive = accuracy lost).
- FLOPs / params reduction (mean, %), measured speed-up at batch 1 and 64 (mean of the
  records' ``latency``), runs, failed runs, epochs actually trained (min-max).

Failed trials are counted in their group's ``failed`` column and listed in the notes; they
never enter a mean. Nothing is invented: a missing baseline or latency is ``n/a`` with a note.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from harness.errors import UserError
from harness.results import load as R
from harness.results.render import check_format, render
from harness.results.paper import MATCH_TOLERANCE, PAPER_RESULTS, SOURCE, PaperResult, match_paper

UNPRUNED = "unpruned"  # the pruner column of baseline rows
NA = "n/a"
MAX_FAILED_LISTED = 10


@dataclass(frozen=True)
class Stat:
    """Mean and sample std (ddof=1) of some runs' values; std is None below two values."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> "Stat":
        xs = [float(v) for v in values if v is not None]
        if not xs:
            return cls(None, None, 0)
        return cls(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


@dataclass
class Row:
    model: str
    dataset: str
    pruner: str | None                   # None: the unpruned baseline row
    target: float | None                 # requested FLOPs reduction (fraction)
    runs: list[dict[str, Any]]           # successful records
    failed: list[dict[str, Any]]         # failed records
    baseline: Stat                       # top-1 of the unpruned runs of (model, dataset)
    top1: Stat
    top5: Stat
    flops_reduction: Stat                # fraction
    params_reduction: Stat               # fraction
    speedup: dict[int, Stat]             # batch size -> speed-up (x)
    epochs: tuple[int, int] | None       # (min, max) epochs actually trained
    configs: int                         # distinct configurations (seed aside) among the runs
    not_reached: int                     # runs whose target_reached is false
    paper: PaperResult | None = None

    @property
    def seeds(self) -> int:
        return len(self.runs)

    @property
    def drop(self) -> float | None:
        """Baseline top-1 mean minus pruned top-1 mean (percentage points)."""
        if self.baseline.mean is None or self.top1.mean is None:
            return None
        return self.baseline.mean - self.top1.mean

    @property
    def name(self) -> str:
        if self.pruner is None:
            return f"{self.model}/{self.dataset} unpruned"
        return f"{self.model}/{self.dataset} {self.pruner} target {_short_pct(self.target)}%"


@dataclass
class Table:
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    compare_paper: bool = False
    metric: str = "final"  # accuracies of the final epoch, or of the best epoch (harness.results.load.METRICS)
    # Another view of the same rows (e.g. harness.results.time_split) brings its own columns and caption.
    view_columns: list["Column"] | None = None
    caption: str = "Pruning results: top-1 accuracy, FLOPs and parameter reduction, speed-up."

    @property
    def columns(self) -> list["Column"]:
        return self.view_columns if self.view_columns is not None else columns(self.compare_paper, self.metric)


def resolve_metric(metric: str | None, compare_paper: bool = False) -> str:
    """The accuracy a table shows: final epoch by default; the best epoch beside the paper, whose
    numbers are best-epoch ones (like with like); a final-epoch comparison with it is refused."""
    if metric is None:
        return "best" if compare_paper else "final"
    if metric not in R.METRICS:
        raise UserError(f"unknown --metric {metric!r}; use final (the last epoch, default) or best (the best "
                        "test epoch of the final phase, as the papers report)")
    if compare_paper and metric != "best":
        raise UserError("--compare-paper compares with the paper's best-epoch accuracies, so it uses --metric best; "
                        "drop --metric final")
    return metric


# ------------------------------------------------------------------------- building
def build_table(records: Sequence[dict[str, Any]], compare_paper: bool = False, metric: str | None = None) -> Table:
    metric = resolve_metric(metric, compare_paper)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in records:
        target = R.target_of(rec)
        key = (rec.get("model") or "?", R.dataset_of(rec), rec.get("pruner"),
               None if target is None else round(target, 6))
        groups.setdefault(key, []).append(rec)

    baselines = {(m, d): Stat.of(R.accuracy(r, metric, "top1") for r in recs if R.is_ok(r))
                 for (m, d, p, _), recs in groups.items() if p is None}
    rows = []
    for (model, dataset, pruner, target), recs in groups.items():
        ok = [r for r in recs if R.is_ok(r)]
        failed = [r for r in recs if not R.is_ok(r)]
        top1 = Stat.of(R.accuracy(r, metric, "top1") for r in ok)
        epochs = [e for e in (R.epochs_of(r) for r in ok) if e is not None]
        row = Row(
            model=model, dataset=dataset, pruner=pruner, target=target, runs=ok, failed=failed,
            baseline=top1 if pruner is None else baselines.get((model, dataset), Stat(None, None, 0)),
            top1=top1,
            top5=Stat.of(R.accuracy(r, metric, "top5") for r in ok),
            flops_reduction=Stat.of(R.metric(r, "flops", "reduction") for r in ok),
            params_reduction=Stat.of(R.metric(r, "params", "reduction") for r in ok),
            speedup={b: Stat.of(R.metric(r, "latency", f"batch_{b}", "speedup") for r in ok) for b in (1, 64)},
            epochs=(min(epochs), max(epochs)) if epochs else None,
            configs=len({R.config_key(r) for r in ok}),
            not_reached=sum(1 for r in ok if r.get("target_reached") is False),
        )
        if compare_paper:
            row.paper = _paper_for(row)
        rows.append(row)
    rows.sort(key=lambda r: (r.model, r.dataset, r.pruner is not None, r.pruner or "", r.target or 0.0))
    return Table(rows, _notes(rows, records, compare_paper, metric), compare_paper, metric)


def _paper_for(row: Row) -> PaperResult | None:
    """Unpruned rows: any paper result of the model and dataset (for its baseline); pruned rows:
    the one nearest in FLOPs reduction (measured, else the target)."""
    if row.pruner is None:
        return next((p for p in PAPER_RESULTS if p.model == row.model and p.dataset == row.dataset), None)
    reduction = row.flops_reduction.mean if row.flops_reduction.mean is not None else row.target
    return match_paper(row.model, row.dataset, reduction)


def _notes(rows: list[Row], records: Sequence[dict[str, Any]], compare_paper: bool, metric: str) -> list[str]:
    notes = [metric_note(rows, metric),
        "Grouped by (model, dataset, pruner, target FLOPs reduction). Values are the mean ± sample standard "
        "deviation (ddof=1) over the group's successful runs (one per seed); with a single run the std is "
        "undefined and shown as n/a.",
        "Baseline top-1 = the unpruned runs (pruner null) of the same model and dataset in this folder; "
        "top-1 drop = baseline mean - pruned mean, in percentage points (positive = accuracy lost).",
    ]
    counters = sorted({r["flops_counter"] for r in records if r.get("flops_counter")})
    if counters:
        notes.append("FLOPs and params reductions are relative to the unpruned architecture, counted by "
                     + "; ".join(counters) + ".")
    for model, dataset in sorted({(r.model, r.dataset) for r in rows if r.pruner is not None}):
        if not any(r.pruner is None and r.model == model and r.dataset == dataset and r.seeds for r in rows):
            notes.append(f"No unpruned runs of {model} on {dataset} in this folder: its baseline top-1 and drop "
                         f"are n/a (add some with `run_bench.py train --model {model} --dataset {dataset} "
                         f"--seed S --out <folder>/<name>`).")
    for b in rows:  # fairness: LAASP.md asks for the same total epoch budget for every run of a table
        if b.pruner is not None or b.epochs is None:
            continue
        other = [r.epochs for r in rows if r.pruner is not None and (r.model, r.dataset) == (b.model, b.dataset)
                 and r.epochs is not None and r.epochs != b.epochs]
        if other:
            span = (min(e[0] for e in other), max(e[1] for e in other))
            notes.append(f"{b.model}/{b.dataset}: the unpruned baseline trained {_span(b.epochs)} epochs, some pruned "
                         f"groups {_span(span)} (see the epochs column): not the same training budget.")
    ok = [rec for r in rows for rec in r.runs]
    latency = [rec["latency"] for rec in ok if isinstance(rec.get("latency"), dict)]
    if latency:
        devices = sorted({str(lat.get("device")) for lat in latency})
        methods = sorted({str(lat.get("method")) for lat in latency if lat.get("method")})
        notes.append("Speed-up = latency of the unpruned architecture / latency of the pruned network, same "
                     f"device ({', '.join(devices)}); {'; '.join(methods) or 'median latency'}.")
        missing = [r.name for r in rows if r.pruner is not None and r.seeds and r.speedup[1].n < r.seeds]
        if missing:
            notes.append("Speed-up missing from some runs of: " + ", ".join(missing) + ".")
    elif any(r.pruner is not None for r in rows):
        notes.append("No latency in these records: speed-up is n/a.")
    for r in rows:
        if r.not_reached:
            notes.append(f"{r.name}: {r.not_reached} of {r.seeds} runs stopped short of the target "
                         "(target_reached false; see the FLOPs reduction column).")
        unfinished = sum(1 for rec in r.runs if rec.get("finished_in_training") is False)
        if unfinished:
            notes.append(f"{r.name}: {unfinished} of {r.seeds} runs ended training before their last pruning "
                         "iteration and pruned the rest after it, with no fine-tuning (finished_in_training false).")
        if r.configs > 1:
            notes.append(f"{r.name}: the runs span {r.configs} different configurations (a search), so mean and "
                         "std are over those, not over seeds of one setting.")
        seeds = [rec.get("seed") for rec in r.runs]
        if len(set(seeds)) < len(seeds):
            notes.append(f"{r.name}: {len(seeds)} runs but only {len(set(seeds))} distinct seeds.")
    if any(rec.get("init") for rec in ok):
        notes.append("Epochs of three-stage runs (pruned from a trained checkpoint) include that checkpoint's "
                     "training epochs.")
    failed = [rec for r in rows for rec in r.failed]
    if failed:
        listed = [f"{R.label(rec)} ({describe_run(rec)}): {_one_line(rec.get('error') or 'no error recorded')}"
                  for rec in failed[:MAX_FAILED_LISTED]]
        more = f"; and {len(failed) - MAX_FAILED_LISTED} more" if len(failed) > MAX_FAILED_LISTED else ""
        notes.append(f"{len(failed)} failed run(s), counted in 'failed' and left out of every mean: "
                     + "; ".join(listed) + more + ".")
    if compare_paper:
        notes.append(f"Paper columns: {SOURCE}. Its accuracies are best-epoch numbers (the authors' scripts keep and "
                     "evaluate model_best, the best test epoch), so ours are shown the same way. Each row is matched with the paper's LAASP result for the same "
                     f"model and dataset with the nearest FLOPs reduction (within {100 * MATCH_TOLERANCE:.0f} pt), "
                     "unpruned rows with the paper's baseline; paper drops are computed from its two accuracies. "
                     "Δ = ours - paper.")
        if not any(r.paper for r in rows):
            notes.append("No row matches a model and dataset of the paper (it reports CIFAR-10 and ImageNet).")
    return notes


def metric_note(rows: Sequence[Row], metric: str) -> str:
    """What the accuracy columns are, said in every table that shows them."""
    if metric == "final":
        return ("Accuracies: each run's test evaluation after its last epoch (records' final). The papers report "
                "the best test epoch instead (run_bench.py table --metric best).")
    runs = [rec for r in rows for rec in r.runs]
    derived = sum(1 for rec in runs if not isinstance(rec.get("best"), dict) and R.best_of(rec) is not None)
    missing = sum(1 for rec in runs if R.best_of(rec) is None)
    note = ("Accuracies: each run's BEST test epoch of its final phase (the papers' convention, the authors' "
            "model_best: the epochs after pruning of a pruned run, every epoch of an unpruned one; top-5 of that "
            "epoch). The epoch is selected on the test set itself, so these numbers are optimistic; the default "
            "final-epoch numbers are not selected.")
    if derived:
        note += f" {derived} record(s) predate the best field: theirs is read from their per-epoch history."
    if missing:
        note += f" {missing} record(s) have no per-epoch history: n/a."
    return note


def _span(epochs: tuple[int, int]) -> str:
    return str(epochs[0]) if epochs[0] == epochs[1] else f"{epochs[0]}-{epochs[1]}"


def describe_run(rec: dict[str, Any]) -> str:
    target = R.target_of(rec)
    pruner = rec.get("pruner") or UNPRUNED
    tgt = f" target {_short_pct(target)}%" if target is not None else ""
    return f"{rec.get('model')}/{R.dataset_of(rec)} {pruner}{tgt} seed {rec.get('seed')}"


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ------------------------------------------------------------------------- columns
@dataclass(frozen=True)
class Column:
    header: str                                   # md / latex / html header
    cell: Callable[[Row], str]                    # display text
    csv: tuple[tuple[str, Callable[[Row], Any]], ...]  # csv name -> raw value (None = empty)
    numeric: bool = True


def fmt_pct(x: float | None) -> str:
    return NA if x is None else f"{100 * x:.2f}"


def _short_pct(x: float | None) -> str:
    return NA if x is None else f"{100 * x:.2f}".rstrip("0").rstrip(".")


def _num(x: float | None, digits: int = 2) -> str:
    return NA if x is None else f"{x:.{digits}f}"


def fmt_pm(s: Stat, scale: float = 1.0) -> str:
    if s.mean is None:
        return NA
    std = NA if s.std is None else f"{scale * s.std:.2f}"
    return f"{scale * s.mean:.2f} ± {std}"


def raw_value(x: float | None, scale: float = 1.0, digits: int = 4) -> float | None:
    return None if x is None else round(scale * x, digits)


def _epochs(r: Row) -> str:
    return NA if r.epochs is None else _span(r.epochs)


def _paper_attr(name: str, scale: float = 1.0) -> Callable[[Row], float | None]:
    def get(r: Row) -> float | None:
        if r.paper is None:
            return None
        if r.pruner is None and name != "baseline_top1":
            return None
        value = r.paper.drop if name == "drop" else getattr(r.paper, name)
        return scale * value

    return get


def _delta(ours: Callable[[Row], float | None], theirs: Callable[[Row], float | None]) -> Callable[[Row], float | None]:
    def get(r: Row) -> float | None:
        a, b = ours(r), theirs(r)
        return None if a is None or b is None else a - b

    return get


def group_columns() -> list[Column]:
    """The columns naming a row's group; every view of the rows starts with them."""
    return [
        Column("model", lambda r: r.model, (("model", lambda r: r.model),), numeric=False),
        Column("dataset", lambda r: r.dataset, (("dataset", lambda r: r.dataset),), numeric=False),
        Column("pruner", lambda r: r.pruner or UNPRUNED, (("pruner", lambda r: r.pruner or UNPRUNED),),
               numeric=False),
        Column("target FLOPs red. (%)", lambda r: fmt_pct(r.target),
               (("target_flops_pct", lambda r: raw_value(r.target, 100)),)),
    ]


def columns(compare_paper: bool = False, metric: str = "final") -> list[Column]:
    # best-epoch accuracies say so in every header and csv name: they are not the final-epoch ones
    best, pre = (", best epoch", "best_") if metric == "best" else ("", "")
    cols = group_columns() + [
        Column(f"baseline top-1{best} (%)", lambda r: fmt_pm(r.baseline),
               ((f"{pre}baseline_top1_mean", lambda r: raw_value(r.baseline.mean)),
                (f"{pre}baseline_top1_std", lambda r: raw_value(r.baseline.std)),
                ("baseline_runs", lambda r: r.baseline.n))),
        Column(f"pruned top-1{best} (%)", lambda r: fmt_pm(r.top1),
               ((f"{pre}top1_mean", lambda r: raw_value(r.top1.mean)),
                (f"{pre}top1_std", lambda r: raw_value(r.top1.std)))),
        Column(f"top-1 drop{best} (pt)", lambda r: _num(r.drop), ((f"{pre}top1_drop", lambda r: raw_value(r.drop)),)),
        Column(f"pruned top-5{best} (%)", lambda r: fmt_pm(r.top5),
               ((f"{pre}top5_mean", lambda r: raw_value(r.top5.mean)),
                (f"{pre}top5_std", lambda r: raw_value(r.top5.std)))),
        Column("FLOPs red. (%)", lambda r: _num(_scaled(r.flops_reduction.mean)),
               (("flops_reduction_pct", lambda r: raw_value(r.flops_reduction.mean, 100)),)),
        Column("params red. (%)", lambda r: _num(_scaled(r.params_reduction.mean)),
               (("params_reduction_pct", lambda r: raw_value(r.params_reduction.mean, 100)),)),
        Column("speed-up b1 (x)", lambda r: _num(r.speedup[1].mean),
               (("speedup_b1", lambda r: raw_value(r.speedup[1].mean)),)),
        Column("speed-up b64 (x)", lambda r: _num(r.speedup[64].mean),
               (("speedup_b64", lambda r: raw_value(r.speedup[64].mean)),)),
        Column("seeds", lambda r: str(r.seeds), (("seeds", lambda r: r.seeds),)),
        Column("failed", lambda r: str(len(r.failed)), (("failed", lambda r: len(r.failed)),)),
        Column("epochs", _epochs, (("epochs_min", lambda r: r.epochs and r.epochs[0]),
                                   ("epochs_max", lambda r: r.epochs and r.epochs[1]))),
    ]
    if compare_paper:
        p_base, p_top1 = _paper_attr("baseline_top1"), _paper_attr("top1")
        p_drop, p_flops = _paper_attr("drop"), _paper_attr("flops_reduction", 100)
        d_base = _delta(lambda r: r.baseline.mean, p_base)
        d_top1 = _delta(lambda r: r.top1.mean if r.pruner else None, p_top1)
        d_drop = _delta(lambda r: r.drop if r.pruner else None, p_drop)
        cols += [
            Column("paper baseline top-1 (%)", lambda r: _num(p_base(r)), (("paper_baseline_top1", p_base),)),
            Column("paper top-1 (%)", lambda r: _num(p_top1(r)), (("paper_top1", p_top1),)),
            Column("paper drop (pt)", lambda r: _num(p_drop(r)), (("paper_drop", lambda r: raw_value(p_drop(r))),)),
            Column("paper FLOPs red. (%)", lambda r: _num(p_flops(r), 1), (("paper_flops_reduction_pct", p_flops),)),
            Column("Δ baseline (pt)", lambda r: _num(d_base(r)), (("delta_baseline", lambda r: raw_value(d_base(r))),)),
            Column("Δ top-1 (pt)", lambda r: _num(d_top1(r)), (("delta_top1", lambda r: raw_value(d_top1(r))),)),
            Column("Δ drop (pt)", lambda r: _num(d_drop(r)), (("delta_drop", lambda r: raw_value(d_drop(r))),)),
        ]
    return cols


def _scaled(x: float | None) -> float | None:
    return None if x is None else 100 * x


def table_for_folder(folder, fmt: str = "md", compare_paper: bool = False, metric: str | None = None) -> str:
    """Records of ``folder`` -> the rendered table (the ``table`` command's work)."""
    check_format(fmt)  # before reading anything
    metric = resolve_metric(metric, compare_paper)
    return render(build_table(R.load_records(folder), compare_paper, metric), fmt)

