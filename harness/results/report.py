"""One self-contained HTML page for a results folder: table, figures, and how the numbers were made.

Everything is inside the file (CSS inline, figures as base64 PNG ``data:`` URIs), so it can be
opened from disk or sent to someone. It is written to ``<folder>/report.html`` by default.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from harness.job.records import portable_path
from harness.results import load as R
from harness.results.render import to_html
from harness.results.tables import Row, Table, build_table, describe_run
from harness.results.time_split import build_time_table

REPORT_NAME = "report.html"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;
color:#222;line-height:1.4}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .5em}th{background:#f3f3f3;text-align:center}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:nth-child(even){background:#fafafa}
.scroll{overflow-x:auto}
ol.notes,ul.facts{font-size:.85em;color:#444}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555;max-width:60em}
code{background:#f5f5f5;padding:0 .2em;font-size:.9em}
details{margin:.4em 0}summary{cursor:pointer}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def image_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _group_name(row: Row) -> str:
    return row.name


def _env_facts(records: Sequence[dict[str, Any]]) -> list[str]:
    envs = Counter()
    for rec in records:
        env = rec.get("env") or {}
        envs[(env.get("device"), env.get("device_name"), env.get("hostname"), env.get("torch"), env.get("cuda"),
               env.get("torch_threads"), env.get("python"))] += 1
    out = []
    for (device, name, host, torch_v, cuda, threads, py), n in envs.most_common():
        out.append(f"{n} run(s) on {device} ({name}), host {host}, torch {torch_v}, CUDA {cuda}, "
                   f"{threads} CPU thread(s), Python {py}")
    return out


def _data_facts(records: Sequence[dict[str, Any]]) -> list[str]:
    seen = Counter()
    for rec in records:
        d = rec.get("data") or {}
        if not d:
            continue
        sub = []
        if d.get("train_subset"):
            sub.append(f"train subset {d['train_subset']}")
        if d.get("test_subset"):
            sub.append(f"test subset {d['test_subset']}")
        if sub:
            sub.append(f"subset seed {d.get('subset_seed')}")
        seen[(f"{d.get('name')}: {d.get('train_size')} training / {d.get('test_size')} test images of "
              f"{d.get('in_channels')}x{d.get('image_size')}x{d.get('image_size')}, {d.get('num_classes')} classes"
              + (f" ({', '.join(sub)})" if sub else ""))] += 1
    return [f"{text} [{n} run(s)]" for text, n in seen.most_common()]


def _provenance_table(table: Table) -> str:
    head = ["group", "seeds", "epochs trained per run", "wall time per run (s)", "training settings",
            "pruner settings"]
    out = ["<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in table.rows:
        runs = row.runs or row.failed
        seeds = ", ".join(str(r.get("seed")) for r in row.runs) or "none"
        epochs = ", ".join(str(R.epochs_of(r)) for r in row.runs) or "n/a"
        walls = [R.metric(r, "wall_time_s") for r in row.runs]
        wall = ", ".join(f"{w:.0f}" if w is not None else "?" for w in walls) or "n/a"
        cfg = (runs[0].get("config") or {}) if runs else {}
        optim = cfg.get("optim") or {}
        train = (f"epochs {cfg.get('epochs')}, lr {optim.get('lr')}, batch {optim.get('batch_size')}, "
                 f"wd {optim.get('weight_decay')}, milestones {optim.get('milestones')}")
        if cfg.get("epoch_budget") is not None:
            train += f", epoch budget {cfg['epoch_budget']}"
        pcfg = cfg.get("pruner_config")
        pruner = f"<code>{_e(json.dumps(pcfg, separators=(', ', ': ')))}</code>" if pcfg else "none"
        if row.configs > 1:
            pruner += f" (and {row.configs - 1} other configuration(s))"
        failed = f" + {len(row.failed)} failed" if row.failed else ""
        out.append(f"<tr><td>{_e(_group_name(row))}</td><td>{_e(seeds + failed)}</td><td>{_e(epochs)}</td>"
                   f"<td>{_e(wall)}</td><td>{_e(train)}</td><td>{pruner}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _differences_section(records: Sequence[dict[str, Any]]) -> list[str]:
    """The comparison view against LAASP: the only place the report calls a difference significant."""
    from harness.errors import UserError
    from harness.results.against import DEFAULT_AGAINST, build_against_table, summary

    out = ["<h2>Which differences are real</h2>"]
    try:
        view = build_against_table(records, DEFAULT_AGAINST)
    except UserError:
        return out + [f"<p>No successful {DEFAULT_AGAINST} runs here, so there is no comparison against it "
                      "(<code>run_bench.py table FOLDER --against PRUNER</code> compares another pruner).</p>"]
    return out + [f"<p>{_e(DEFAULT_AGAINST)} against every other pruner at the same target, paired by seed "
                  f"(final-epoch top-1). {_e(summary(view))}</p>", f'<div class="scroll">{to_html(view)}</div>']


def _failed_section(records: Sequence[dict[str, Any]]) -> str:
    failed = [r for r in records if not R.is_ok(r)]
    if not failed:
        return "<p>No failed runs.</p>"
    items = []
    for rec in failed:
        what = describe_run(rec)
        items.append(f"<li><b>{_e(R.label(rec))}</b> ({_e(what)}): <code>{_e(rec.get('error') or 'no error recorded')}"
                     f"</code></li>")
    return f"<p>{len(failed)} run(s) failed; they are counted in the table's <i>failed</i> column and left out of " \
           f"every mean.</p><ul>{''.join(items)}</ul>"


def build_report(records: Sequence[dict[str, Any]], folder: str | Path, title: str | None = None,
                 with_plots: bool = True) -> str:
    """The report page as a string."""
    from harness.results.figures import png_bytes
    from harness.results.plots import all_plots

    folder = Path(folder)
    table = build_table(records)
    paper = build_table(records, compare_paper=True)
    ok = sum(1 for r in records if R.is_ok(r))
    title = title or f"Pruning benchmark: {folder.resolve().name}"
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style>", "</head>", "<body>", f"<h1>{_e(title)}</h1>",
        f"<p>Generated {now} by <code>run_bench.py report</code> from {len(records)} record(s) in "
        f"<code>{_e(portable_path(folder))}</code>: {ok} successful, {len(records) - ok} failed. Every number below is "
        "read from those records; nothing is re-measured.</p>",
        "<h2>Results</h2>", f'<div class="scroll">{to_html(table)}</div>',
    ]
    parts += _differences_section(records)
    parts += ["<h2>Best epoch (the papers' convention)</h2>",
              "<p>The same groups with each run's best test epoch of its final phase, as the papers report "
              "(the authors keep <code>model_best</code>). That epoch is chosen on the test set itself, so these "
              "numbers are <b>optimistic</b>; the table above (final epoch) is not selected.</p>",
              f'<div class="scroll">{to_html(build_table(records, metric="best"))}</div>']
    matched = [r for r in paper.rows if r.paper is not None]
    parts.append("<h2>Against the paper</h2>")
    if matched:
        paper.rows = matched
        parts.append("<p>The paper's accuracies are best-epoch numbers, so ours are shown at the best epoch too "
                     "(optimistic, like theirs).</p>")
        parts.append(f'<div class="scroll">{to_html(paper)}</div>')
    else:
        parts.append("<p>No model and dataset here appears in the paper's results (CIFAR-10 and ImageNet "
                     "only); see <code>harness/results/paper.py</code> for its table.</p>")
    if with_plots:
        parts.append("<h2>Figures</h2>")
        plots = all_plots(records, folder)
        if not plots:
            parts.append("<p>The records hold nothing to plot.</p>")
        for plot in plots:
            parts.append(f"<figure><h3>{_e(plot.title)}</h3>{image_tag(png_bytes(plot.figure), plot.title)}"
                         f"<figcaption>{_e(plot.caption)}</figcaption></figure>")
        is_sweep = any(r.get("sweep") for r in records) or (folder / "records").is_dir()
        if is_sweep and not any(p.name.startswith("search_history") for p in plots):
            parts.append("<p>No search history: this folder has no <code>optuna.db</code> and its records carry "
                         "no <code>search</code> entries.</p>")
    times = build_time_table(records, table.rows)
    parts += ["<h2>Where the time went</h2>", f'<div class="scroll">{to_html(times)}</div>']
    parts += ["<h2>How these numbers were obtained</h2>", '<ul class="facts">']
    facts = [
        "Each group's statistics are over its successful runs, one per seed: mean ± sample standard deviation "
        "(ddof=1); a single run has no std (n/a). The baseline is the unpruned runs of the same model and dataset "
        "in this folder, and the top-1 drop is computed from the two means.",
        "Accuracies are the final test-set evaluation of each run (records' final.top1 / final.top5).",
    ]
    facts += [f"FLOPs counter: {c}" for c in sorted({r["flops_counter"] for r in records if r.get("flops_counter")})]
    lat = [r["latency"] for r in records if isinstance(r.get("latency"), dict)]
    for device, method in sorted({(str(x.get("device")), str(x.get("method"))) for x in lat}):
        facts.append(f"Latency on {device}: {method}; speed-up = unpruned-architecture latency / pruned latency.")
    if not lat:
        facts.append("No run recorded latency, so speed-up is n/a.")
    facts += [f"Data: {d}" for d in _data_facts(records)]
    facts += [f"Environment: {e}" for e in _env_facts(records)]
    parts += [f"<li>{_e(f)}</li>" for f in facts] + ["</ul>"]
    parts += ["<h3>Runs per group</h3>", f'<div class="scroll">{_provenance_table(table)}</div>',
              "<h2>Failed runs</h2>", _failed_section(records)]
    files = sorted({Path(r[R.SOURCE_KEY]).name if Path(r[R.SOURCE_KEY]).parent.name == "records"
                    else str(Path(r[R.SOURCE_KEY]).relative_to(folder)) if _inside(r[R.SOURCE_KEY], folder)
                    else r[R.SOURCE_KEY] for r in records})
    parts += [f"<details><summary>{len(files)} record file(s) read</summary><ul>"
              + "".join(f"<li><code>{_e(f)}</code></li>" for f in files) + "</ul></details>"]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _inside(path: str, folder: Path) -> bool:
    try:
        Path(path).relative_to(folder)
        return True
    except ValueError:
        return False


def write_report(folder: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Read the folder's records, write the page (default ``<folder>/report.html``), return its path."""
    records = R.load_records(folder)
    path = Path(out) if out else Path(folder) / REPORT_NAME
    return R.write_text_atomic(path, build_report(records, folder, title))
