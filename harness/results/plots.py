"""Figures of a results folder, drawn from the records alone (matplotlib, no pyplot, PNG).

Each function takes records (as `harness.results.load.load_records` returns them) and returns a
`matplotlib.figure.Figure`, or None when the records hold nothing to draw:

- `accuracy_vs_flops`: top-1 against FLOPs reduction, every pruner, mean ± std over seeds,
  the unpruned baseline, and the Pareto front of the group means;
- `layer_rates`: the fraction of filters removed in each layer, LAASP against the others;
- `criterion_use`: filters removed by each criterion, over the LAASP runs;
- `training_curves`: test top-1 over the epochs actually trained, with the FLOPs reduction,
  every pruning step and the recovery epochs marked;
- `search_history` (in `harness.results.search_plots`): an Optuna sweep's objective per trial.

Figures are built on `matplotlib.figure.Figure` directly (the Agg canvas), so nothing here
touches pyplot's global state or needs a display.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from matplotlib.figure import Figure

from harness.results import load as R
from harness.results.figures import Plot, new_figure
from harness.results.tables import Row, build_table

MAX_PANELS = 6
PHASE_STYLE = {"recover": ("tab:orange", "recovery epoch"), "budget": ("tab:gray", "budget top-up epoch")}


def pruner_colors(pruners: Iterable[str | None]) -> dict[str | None, str]:
    """A fixed colour per pruner (LAASP first), the same in every figure of a folder."""
    names = sorted({p for p in pruners if p is not None}, key=lambda p: (p != "laasp", p))
    colors = {p: f"C{i % 10}" for i, p in enumerate(names)}
    colors[None] = "black"
    return colors


def pruner_markers(pruners: Iterable[str | None]) -> dict[str | None, str]:
    """A marker per pruner, changing every ten pruners as the colours repeat (`pruner_colors`),
    so no two groups of a figure look alike."""
    names = sorted({p for p in pruners if p is not None}, key=lambda p: (p != "laasp", p))
    return {p: MARKERS[(i // 10) % len(MARKERS)] for i, p in enumerate(names)}


def _grid(n: int, width: float = 6.0, height: float = 4.2, cols: int = 2) -> tuple[Figure, list[Any]]:
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    fig = new_figure(width * cols, height * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _by_model(rows: Sequence[Row]) -> dict[tuple[str, str], list[Row]]:
    out: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        out.setdefault((r.model, r.dataset), []).append(r)
    return out


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{100 * x:g}"


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


LEGEND_INSIDE_UP_TO = 8  # groups; more and the legend covers the points
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


# ------------------------------------------------------------------------- accuracy vs FLOPs
def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (higher x and higher y are better), by x."""
    front = [p for p in points
             if not any(q[0] >= p[0] and q[1] >= p[1] and (q[0] > p[0] or q[1] > p[1]) for q in points)]
    return sorted(set(front))


def accuracy_vs_flops(records: Sequence[dict[str, Any]]) -> Figure | None:
    rows = [r for r in build_table(records).rows if r.seeds and r.top1.mean is not None]
    pruned = [r for r in rows if r.pruner is not None and r.flops_reduction.mean is not None]
    if not pruned:
        return None
    colors = pruner_colors(r.pruner for r in rows)
    markers = pruner_markers(r.pruner for r in rows)
    panels = [k for k, v in _by_model(rows).items() if any(r.pruner is not None for r in v)][:MAX_PANELS]
    crowded = len(markers) > LEGEND_INSIDE_UP_TO  # an ablation's 20 groups: the legend goes beside the axes
    fig, axes = _grid(len(panels), width=9.5 if crowded else 6.0, cols=1 if crowded else 2)
    for ax, (model, dataset) in zip(axes, panels):
        group = [r for r in rows if (r.model, r.dataset) == (model, dataset)]
        for base in (r for r in group if r.pruner is None):
            m, s = base.top1.mean, base.top1.std or 0.0
            ax.axhline(m, color="black", ls="--", lw=1, label=f"unpruned baseline ({_runs(base.seeds)})")
            if s:
                ax.axhspan(m - s, m + s, color="black", alpha=0.08, lw=0)
        points = []
        for pruner in sorted({r.pruner for r in group if r.pruner}, key=lambda p: (p != "laasp", p)):
            prs = sorted((r for r in group if r.pruner == pruner and r.flops_reduction.mean is not None),
                         key=lambda r: r.flops_reduction.mean)
            for r in prs:  # the single runs, faint
                single = [(R.metric(rec, "flops", "reduction"), R.metric(rec, "final", "top1")) for rec in r.runs]
                single = [(100 * x, y) for x, y in single if x is not None and y is not None]
                ax.scatter([x for x, _ in single], [y for _, y in single], color=colors[pruner], alpha=0.25, s=12, lw=0)
            x = [100 * r.flops_reduction.mean for r in prs]
            y = [r.top1.mean for r in prs]
            ax.errorbar(x, y, yerr=[r.top1.std or 0.0 for r in prs],
                        xerr=[100 * (r.flops_reduction.std or 0.0) for r in prs], fmt=f"{markers[pruner]}-",
                        ms=6, capsize=3, color=colors[pruner],
                        label=f"{pruner} (mean ± std, {_runs(sum(r.seeds for r in prs))})")
            points += list(zip(x, y))
        front = pareto_front(points)
        if front:
            fx, fy = zip(*front)
            ax.plot(fx, fy, "o-", color="gold", lw=6, ms=16, alpha=0.45, zorder=0, solid_capstyle="round",
                    label=f"Pareto front ({len(front)} group mean{'s' if len(front) != 1 else ''})")
        ax.set_title(f"Top-1 vs FLOPs reduction: {model} on {dataset}")
        ax.set_xlabel("FLOPs reduction (% of the unpruned network)")
        ax.set_ylabel("test top-1 accuracy (%)")
        ax.grid(alpha=0.3)
        if crowded:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        else:
            ax.legend(fontsize=8, loc="best")
    return fig


# ------------------------------------------------------------------------- per-layer rates
def layer_rates(records: Sequence[dict[str, Any]]) -> Figure | None:
    """Mean fraction of filters removed per layer, one line per pruner, per (model, dataset, target)."""
    runs = [r for r in records if R.is_ok(r) and isinstance(r.get("layer_rates"), dict) and r["layer_rates"]]
    if not runs:
        return None
    combos: dict[tuple, list[dict[str, Any]]] = {}
    for rec in runs:
        combos.setdefault((rec["model"], R.dataset_of(rec), R.target_of(rec)), []).append(rec)
    # panels with LAASP and at least one other pruner first: that comparison is the point
    keys = sorted(combos, key=lambda k: (-len({r["pruner"] for r in combos[k]}),
                                         not any(r["pruner"] == "laasp" for r in combos[k]), str(k)))[:MAX_PANELS]
    colors = pruner_colors(r["pruner"] for r in runs)
    fig, axes = _grid(len(keys), width=max(6.0, 0.2 * max(len(combos[k][0]["layer_rates"]) for k in keys)), cols=1)
    for ax, key in zip(axes, keys):
        model, dataset, target = key
        layers: list[str] = []
        for rec in combos[key]:
            layers += [name for name in rec["layer_rates"] if name not in layers]
        for k, pruner in enumerate(sorted({r["pruner"] for r in combos[key]}, key=lambda p: (p != "laasp", p))):
            recs = [r for r in combos[key] if r["pruner"] == pruner]
            mean = [100 * sum(r["layer_rates"].get(n, 0.0) for r in recs) / len(recs) for n in layers]
            lw, ms = (2.2, 6) if pruner == "laasp" else (1.4, 4)
            # distinct line style and marker per pruner: uniform baselines often coincide exactly
            ax.plot(range(len(layers)), mean, ls=LINESTYLES[k % len(LINESTYLES)], marker=MARKERS[k % len(MARKERS)],
                    lw=lw, ms=ms, mfc="none" if k else None, color=colors[pruner],
                    label=f"{pruner} (mean of {_runs(len(recs))})")
        step = max(1, len(layers) // 40)
        ax.set_xticks(range(0, len(layers), step))
        ax.set_xticklabels([layers[i] for i in range(0, len(layers), step)], rotation=90, fontsize=7)
        ax.set_xlim(-0.5, len(layers) - 0.5)
        ax.set_ylim(bottom=0)
        ax.set_title(f"Per-layer pruning rate: {model} on {dataset}, target {_pct(target)}% FLOPs red.", fontsize=10)
        ax.set_xlabel("prunable conv layer (network order)")
        ax.set_ylabel("filters removed (% of the layer)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------------- criterion use
def criterion_use(records: Sequence[dict[str, Any]], pruner: str = "laasp") -> Figure | None:
    """Filters removed per criterion, mean over the runs of each (model, dataset, target) group."""
    runs = [r for r in records if R.is_ok(r) and r.get("pruner") == pruner
            and isinstance(r.get("removed_per_criterion"), dict) and r["removed_per_criterion"]]
    if not runs:
        return None
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in runs:
        groups.setdefault((rec["model"], R.dataset_of(rec), R.target_of(rec)), []).append(rec)
    criteria: list[str] = []
    for rec in runs:
        criteria += [c for c in rec["removed_per_criterion"] if c not in criteria]
    keys = sorted(groups, key=str)
    fig = new_figure(8.0, 1.6 + 0.7 * len(keys))
    ax = fig.add_subplot()
    left = [0.0] * len(keys)
    labels = [f"{m} / {d}\ntarget {_pct(t)}% ({_runs(len(groups[(m, d, t)]))})" for m, d, t in keys]
    for i, crit in enumerate(criteria):
        widths = [sum(r["removed_per_criterion"].get(crit, 0) for r in groups[k]) / len(groups[k]) for k in keys]
        bars = ax.barh(range(len(keys)), widths, left=left, color=f"C{i % 10}", label=crit)
        totals = [sum(sum(r["removed_per_criterion"].values()) for r in groups[k]) / len(groups[k]) for k in keys]
        for bar, w, tot in zip(bars, widths, totals):
            if tot and w / tot >= 0.06:
                ax.text(bar.get_x() + w / 2, bar.get_y() + bar.get_height() / 2, f"{100 * w / tot:.0f}%",
                        ha="center", va="center", fontsize=8, color="white")
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("filters removed (mean over runs; label: share of the run's removals)")
    ax.set_title(f"Criterion use: filters removed by each criterion ({pruner})")
    ax.legend(title="criterion", fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return fig


# ------------------------------------------------------------------------- training curves
def step_positions(record: dict[str, Any]) -> list[tuple[float, float]]:
    """(epochs trained before the step, FLOPs reduction after it) of each pruning step.

    A step's own ``epochs_trained`` is used when the trace has it; otherwise it is inferred
    from the history: pruning starts after the ``train`` epochs, and a recovery epoch run
    after step k carries step k's FLOPs reduction, so the recovery epochs before step s are
    those with a smaller reduction than step s's.
    """
    history = record.get("history") or []
    trace = record.get("trace") or []
    n_train = sum(1 for h in history if h.get("phase") == "train")
    recover = [h.get("flops_reduction") or 0.0 for h in history if h.get("phase") == "recover"]
    out = []
    for step in trace:
        reduction = step.get("flops_reduction")
        if reduction is None:
            continue
        if step.get("epochs_trained") is not None:
            x = float(step["epochs_trained"])
        else:
            x = float(n_train + sum(1 for r in recover if r < reduction - 1e-9))
        out.append((x, reduction))
    return out


def _curve_groups(records: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in records:
        if R.is_ok(rec) and rec.get("history"):
            groups.setdefault((rec["model"], R.dataset_of(rec), rec.get("pruner"), R.target_of(rec)), []).append(rec)
    keys = sorted(groups, key=lambda k: (k[2] is None, k[2] != "laasp", k[0], k[1], k[2] or "", k[3] or 0.0))
    named = []
    for model, dataset, pruner, target in keys[:MAX_PANELS]:
        name = f"{model} / {dataset}: " + (f"{pruner}, target {_pct(target)}%" if pruner else "unpruned")
        named.append((name, sorted(groups[(model, dataset, pruner, target)], key=lambda r: r.get("seed") or 0)))
    return named


def training_curves(records: Sequence[dict[str, Any]], max_seeds: int = 5) -> Figure | None:
    groups = _curve_groups(records)
    if not groups:
        return None
    fig, axes = _grid(len(groups), width=6.4, height=4.4)
    for ax, (name, recs) in zip(axes, groups):
        twin = ax.twinx()
        shown = recs[:max_seeds]
        first = shown[0]
        # phases of the first run as background: recovery / top-up epochs, and the prune point
        seen = set()
        for h in first["history"]:
            style = PHASE_STYLE.get(h.get("phase"))
            if style:
                color, text = style
                ax.axvspan(h["epoch"] - 1, h["epoch"], color=color, alpha=0.18, lw=0,
                           label=None if text in seen else f"{text} (seed {first.get('seed')})")
                seen.add(text)
        for i, rec in enumerate(shown):
            color = f"C{i % 10}"
            hist = rec["history"]
            xs = [h["epoch"] for h in hist if h.get("test_top1") is not None]
            ys = [h["test_top1"] for h in hist if h.get("test_top1") is not None]
            ax.plot(xs, ys, "-", color=color, lw=1.6, marker="." if len(xs) < 40 else None,
                    label=f"test top-1, seed {rec.get('seed')}")
            if rec.get("pruner") is None:
                continue
            steps = step_positions(rec)
            if steps:
                # FLOPs reduction as a step function of epochs trained: flat during epochs,
                # jumping at each pruning step
                fx, fy = [0.0], [0.0]
                for x, r in steps:
                    fx += [x, x]
                    fy += [fy[-1], 100 * r]
                fx.append(float(hist[-1]["epoch"]))
                fy.append(fy[-1])
                twin.plot(fx, fy, color=color, lw=1, ls=":", alpha=0.9)
                twin.scatter([x for x, _ in steps], [100 * r for _, r in steps], color=color, marker="v", s=14,
                             zorder=3, label=f"pruning step ({len(steps)}), seed {rec.get('seed')}")
            if i == 0 and steps:
                ax.axvline(steps[0][0], color="black", lw=0.8, ls="--", label="pruning starts")
        if all(rec.get("pruner") is None for rec in shown):
            twin.set_visible(False)
        if len(recs) > len(shown):
            ax.text(0.01, 0.01, f"{len(recs) - len(shown)} more runs not drawn", transform=ax.transAxes, fontsize=7)
        ax.set_title(f"Training: {name}", fontsize=10)
        ax.set_xlabel("epochs trained (recovery epochs included)")
        ax.set_ylabel("test top-1 accuracy (%)")
        twin.set_ylabel("FLOPs reduction (%), dotted")
        top = max((100 * r for rec in shown if rec.get("pruner") for _, r in step_positions(rec)), default=50.0)
        twin.set_ylim(0, min(100.0, 1.3 * top + 2))
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        h2, l2 = twin.get_legend_handles_labels()
        ax.legend(handles + h2, labels + l2, fontsize=7, loc="lower right")
    return fig


# ------------------------------------------------------------------------- all of them
def all_plots(records: Sequence[dict[str, Any]], folder=None) -> list[Plot]:
    """Every figure the records support (a search history when ``folder`` holds optuna.db)."""
    from harness.results.search_plots import search_history

    made = [
        ("accuracy_vs_flops", "Top-1 accuracy vs FLOPs reduction", accuracy_vs_flops(records),
         "Each point is a (pruner, target) group: mean test top-1 over its seeds with ± 1 sample std error bars "
         "(faint dots: single runs). The dashed line is the unpruned baseline (band: ± std); the thick line joins "
         "the group means no other group beats on both accuracy and FLOPs reduction."),
        ("layer_rates", "Per-layer pruning rates", layer_rates(records),
         "Share of each prunable conv layer's filters removed (records' layer_rates, mean over seeds): LAASP "
         "chooses the layers by loss, the uniform baselines prune every layer alike."),
        ("criterion_use", "Criterion use (LAASP)", criterion_use(records),
         "Filters removed by each criterion of the pool over the LAASP runs (records' removed_per_criterion)."),
        ("training_curves", "Training curves", training_curves(records),
         "Test top-1 after every epoch actually trained (records' history); triangles: pruning steps (right axis: "
         "FLOPs reduction after the step); shaded: recovery epochs (and budget top-up epochs) of the first seed."),
    ]
    plots = [Plot(name, title, caption, fig) for name, title, fig, caption in made if fig is not None]
    if folder is not None:
        plots += search_history(folder, records)
    return plots
