"""Every figure from a small real sweep (tiny digits runs through the CLI) is a real, non-empty PNG."""
from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from harness.results import load as R
from harness.results.figures import png_bytes
from harness.results.plots import (accuracy_vs_flops, all_plots, criterion_use, layer_rates, pareto_front,
                           step_positions, training_curves)
from harness.results.search_plots import load_optuna_studies, search_history, trials_from_records
from tests.tiny_sweep import get_tiny_sweep


@pytest.fixture(scope="session")
def sweep(tmp_path_factory):
    return get_tiny_sweep(tmp_path_factory)


@pytest.fixture(scope="session")
def records(sweep):
    return R.load_records(sweep)


def check_png(fig, path, min_side=300):
    path.write_bytes(png_bytes(fig))
    assert path.stat().st_size > 10_000
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert h >= min_side and w >= min_side, (h, w)
    assert float(np.std(img[..., :3])) > 0.02  # not a blank canvas
    return img


def test_accuracy_vs_flops(records, tmp_path) -> None:
    fig = accuracy_vs_flops(records)
    check_png(fig, tmp_path / "a.png")
    ax = fig.axes[0]
    assert "FLOPs reduction (%" in ax.get_xlabel() and "top-1" in ax.get_ylabel() and ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    for word in ("laasp", "l1_uniform", "fpgm", "unpruned baseline", "Pareto front"):
        assert any(word in label for label in labels), (word, labels)


def test_pareto_front_keeps_the_undominated_points() -> None:
    pts = [(20, 90), (30, 89), (30, 85), (50, 80), (40, 70), (50, 79)]
    assert pareto_front(pts) == [(20, 90), (30, 89), (50, 80)]


def test_layer_rates(records, tmp_path) -> None:
    fig = layer_rates(records)
    check_png(fig, tmp_path / "l.png")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("laasp" in label for label in labels) and any("l1_uniform" in label for label in labels)
    assert "%" in ax.get_ylabel()
    assert "conv1" in [t.get_text() for t in ax.get_xticklabels()]


def test_criterion_use(records, tmp_path) -> None:
    fig = criterion_use(records)
    check_png(fig, tmp_path / "c.png", min_side=150)
    used = {c for r in records if r.get("pruner") == "laasp" and R.is_ok(r) for c in r["removed_per_criterion"]}
    legend = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert used and used <= legend


def test_training_curves_mark_pruning_and_recovery(records, tmp_path) -> None:
    fig = training_curves(records)
    check_png(fig, tmp_path / "t.png")
    laasp_ax = next(ax for ax in fig.axes if "laasp" in ax.get_title())
    twin = next(ax for ax in fig.axes if ax is not laasp_ax and ax.bbox.bounds == laasp_ax.bbox.bounds)
    labels = [t.get_text() for t in laasp_ax.get_legend().get_texts()]
    assert any("pruning step" in label for label in labels) and any("recovery epoch" in label for label in labels)
    assert "epochs" in laasp_ax.get_xlabel() and "FLOPs" in twin.get_ylabel()
    laasp = next(r for r in records if r.get("pruner") == "laasp" and R.is_ok(r))
    steps = step_positions(laasp)
    assert len(steps) == len(laasp["trace"])
    assert steps[0][0] == laasp["config"]["pruner_config"]["prune_epoch"]  # after the train epochs
    n_recover = sum(1 for h in laasp["history"] if h["phase"] == "recover")
    assert all(steps[0][0] <= x <= steps[0][0] + n_recover for x, _ in steps)
    assert [r for _, r in steps] == sorted(r for _, r in steps)


def test_search_history_from_optuna_db(sweep, records, tmp_path) -> None:
    studies = {s.name: s for s in load_optuna_studies(sweep / "optuna.db")}
    assert set(studies) == {"single", "multi"}
    assert len(studies["single"].complete) == 8 and studies["single"].other == {"fail": [8]}
    assert studies["multi"].metric_names == ["top-1 (%)", "FLOPs reduction (%)"]
    plots = search_history(sweep, records)
    assert len(plots) == 2
    for i, plot in enumerate(plots):
        check_png(plot.figure, tmp_path / f"s{i}.png")
    titles = " ".join(p.figure.axes[0].get_title() for p in plots)
    assert "objective per trial" in titles and "two objectives" in titles


def test_search_history_without_db_uses_records_or_nothing(records, tmp_path) -> None:
    trials = trials_from_records(records)
    assert trials is not None and len(trials.complete) == 6 and trials.other == {}
    assert len(search_history(tmp_path, records)) == 1
    plain = [{k: v for k, v in r.items() if k != "search"} for r in records]
    assert search_history(tmp_path, plain) == []
    (tmp_path / "optuna.db").write_text("not a database")
    assert search_history(tmp_path, plain) == []  # unreadable: skipped with a warning, no crash


def test_all_plots_and_nothing_to_draw(sweep, records) -> None:
    names = [p.name for p in all_plots(records, sweep)]
    assert names[:4] == ["accuracy_vs_flops", "layer_rates", "criterion_use", "training_curves"]
    assert sum(n.startswith("search_history") for n in names) == 2
    unpruned = [r for r in records if r.get("pruner") is None]
    assert accuracy_vs_flops(unpruned) is None and layer_rates(unpruned) is None and criterion_use(unpruned) is None
    assert training_curves(unpruned) is not None


def test_many_groups_look_apart_and_the_legend_leaves_the_points_alone(records, tmp_path) -> None:
    """An ablation's 20 groups: colours repeat after ten, so markers change with them, and the
    legend sits beside the axes instead of over the points."""
    from harness.results.plots import pruner_colors, pruner_markers

    names = [f"p{i:02d}" for i in range(20)]
    looks = {(pruner_colors(names)[n], pruner_markers(names)[n]) for n in names}
    assert len(looks) == 20
    many = []
    for rec in records:
        for i in range(12):
            if rec.get("pruner"):
                many.append({**rec, "pruner": f"{rec['pruner']}{i}"})
    fig = accuracy_vs_flops(records + many)
    check_png(fig, tmp_path / "many.png")
    ax = fig.axes[0]
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1  # beside the axes
    few = accuracy_vs_flops(records)
    check_png(few, tmp_path / "few.png")
    assert few.axes[0].get_legend().get_window_extent().x1 <= few.axes[0].get_window_extent().x1  # inside
