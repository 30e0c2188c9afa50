"""The HTML report of a small real sweep: valid HTML, the table, embedded PNGs, provenance."""
from __future__ import annotations

import argparse
import base64
import json
from html.parser import HTMLParser

import pytest

from harness.errors import UserError
from harness.cli.results import add_report_args, report_main
from tests.tiny_sweep import get_tiny_sweep

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "wbr", "source", "area", "base", "embed", "track"}


@pytest.fixture(scope="session")
def sweep(tmp_path_factory):
    return get_tiny_sweep(tmp_path_factory)


class Page(HTMLParser):
    """Collects tables, images and text, and checks that every element is closed in order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.images, self.tables, self.text = [], [], [], [], []
        self.cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self.cell is not None:
            self.cell.append(data)


@pytest.fixture(scope="session")
def report(sweep):
    parser = argparse.ArgumentParser()
    add_report_args(parser)
    assert report_main(parser.parse_args([str(sweep)])) == 0
    path = sweep / "report.html"
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return path, page


def test_report_is_valid_html_with_the_table(report, capsys) -> None:
    path, page = report
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert page.errors == [] and page.stack == []
    results = page.tables[0]
    header = results[0]
    assert "pruned top-1 (%)" in header and "top-1 drop (pt)" in header and "speed-up b64 (x)" in header
    rows = {(r[header.index("pruner")], r[header.index("target FLOPs red. (%)")]): dict(zip(header, r))
            for r in results[1:]}
    laasp = rows[("laasp", "20.00")]
    assert (laasp["seeds"], laasp["failed"]) == ("2", "1")  # the failed trial is counted
    assert laasp["speed-up b1 (x)"] != "n/a"
    base = rows[("unpruned", "n/a")]
    assert base["seeds"] == "2"
    records = [json.loads(p.read_text()) for p in (path.parent / "records").glob("*.json")]
    tops = sorted(r["final"]["top1"] for r in records if r.get("pruner") is None)
    assert base["pruned top-1 (%)"].startswith(f"{sum(tops) / 2:.2f} ± ")


def test_report_embeds_every_figure_as_png(report) -> None:
    _, page = report
    pngs = [img["src"] for img in page.images if img.get("src", "").startswith("data:image/png;base64,")]
    assert len(pngs) == len(page.images) >= 6  # 4 figures + 2 Optuna studies
    for src in pngs:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(img.get("alt") for img in page.images)


def test_report_says_how_the_numbers_were_obtained(report) -> None:
    _, page = report
    text = " ".join(page.text)
    assert "How these numbers were obtained" in text
    assert "harness.prune.flops.count_cost" in text and "ddof=1" in text
    assert "Environment:" in text and "torch" in text
    assert "Latency on cpu" in text and "median of" in text
    assert "laasp_s2" in text and "CUDA out of memory (simulated)" in text  # the failed trial and why
    assert "Runs per group" in text and "epochs trained per run" in text


def test_report_out_and_errors(sweep, tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser()
    add_report_args(parser)
    out = tmp_path / "r.html"
    assert report_main(parser.parse_args([str(sweep), "--out", str(out), "--title", "My <sweep>"])) == 0
    assert capsys.readouterr().out.strip() == f"report: {out.resolve()}"
    assert "<title>My &lt;sweep&gt;</title>" in out.read_text()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no records found"):
        report_main(parser.parse_args([str(tmp_path / "empty")]))
    with pytest.raises(UserError, match="is a folder"):
        report_main(parser.parse_args([str(sweep), "--out", str(tmp_path)]))


def test_report_splits_the_wall_time(report) -> None:
    _, page = report
    text = " ".join(page.text)
    assert "Where the time went" in text
    times = next(t for t in page.tables if t and "selection (s)" in t[0])
    header = times[0]
    laasp = next(dict(zip(header, r)) for r in times[1:] if r[header.index("pruner")] == "laasp")
    assert laasp["runs"] == "2" and float(laasp["selection (s)"].split(" ± ")[0]) > 0


def test_plots_command_writes_every_figure(sweep, tmp_path, capsys) -> None:
    from harness.cli.results import add_plots_args, plots_main

    parser = argparse.ArgumentParser()
    add_plots_args(parser)
    assert plots_main(parser.parse_args([str(sweep), "--out", str(tmp_path / "png")])) == 0
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert {"accuracy_vs_flops.png", "layer_rates.png", "criterion_use.png", "training_curves.png"} <= set(pngs)
    assert all((tmp_path / "png" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in pngs)
    first = (tmp_path / "png" / "accuracy_vs_flops.png").read_bytes()
    assert plots_main(parser.parse_args([str(sweep), "--out", str(tmp_path / "png")])) == 0
    assert (tmp_path / "png" / "accuracy_vs_flops.png").read_bytes() == first  # same records, same file
    assert plots_main(parser.parse_args([str(sweep), "--out", str(tmp_path / "pdf"), "--format", "pdf"])) == 0
    assert (tmp_path / "pdf" / "layer_rates.pdf").read_bytes()[:5] == b"%PDF-"
    assert "plot: " in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    for argv, words in ((["--format", "jpg"], "unknown --format 'jpg'"),
                        (["--out", str(tmp_path / "file")], "is a file")):
        with pytest.raises(UserError, match=words):
            plots_main(parser.parse_args([str(sweep), *argv]))


def test_report_says_which_differences_are_real_and_shows_the_best_epoch(report) -> None:
    """The comparison view (the only place the text says "significant") and the papers' best-epoch table,
    labelled optimistic, with best >= final for every group."""
    _, page = report
    text = " ".join(page.text)
    assert "Which differences are real" in text and "could be tested" in text  # one l1/fpgm seed: no test
    view = next(t for t in page.tables if t and "p Holm" in t[0])
    header = view[0]
    assert {r[header.index("comparison")] for r in view[1:]} == {"laasp - l1_uniform", "laasp - fpgm(prune_epoch=1)"}
    assert "Best epoch (the papers' convention)" in text and "optimistic" in text
    best = next(t for t in page.tables if t and "pruned top-1, best epoch (%)" in t[0])
    final = page.tables[0]
    mean = lambda table, row: float(row[table[0].index([h for h in table[0] if h.startswith("pruned top-1")][0])]
                                    .split(" ± ")[0])
    for b, f in zip(best[1:], final[1:]):
        assert b[:4] == f[:4]
        # fpgm is soft pruning: its epochs evaluate the masked network, `final` the one whose masked
        # filters were then removed (README, "Soft pruning and the end"), so best >= final need not hold
        if not b[2].startswith("fpgm"):
            assert mean(best, b) >= mean(final, f)
