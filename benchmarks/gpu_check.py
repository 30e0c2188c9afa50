#!/usr/bin/env python3
"""The GPU check: does the harness work on this CUDA machine, and how fast is it there.

Run it through ``benchmarks/gpu_check.sh`` (which installs the carried wheels first, and says so
and exits 0 where there is no GPU):

    benchmarks/gpu_check.sh [--out results/gpu] [--data-root DIR_OR_ZIP] [--budget-s 480] [--work DIR]

Sections, in this order, each a child process with its own time limit inside the budget:

1. ``smoke_tests``: the CUDA-only tests (``pytest -m cuda``);
2. ``smoke_laasp``: a 3-epoch LAASP run on digits on CUDA, through the CLI;
3. ``throughput``: ResNet-56 training img/s, ours (data on the device, AMP, channels_last), eager
   and through ``torch.compile``, against the authors' DataLoader + PIL loop in fp32
   (`bench_throughput.measure`);
4. ``sweep``: a 4-trial Ray sweep sharing the one GPU (``--gpus-per-trial 0.25``);
5. ``selection``: one LAASP selection step, exact and approximate (LAASP's default race), against
   the authors' loop on a 10,000-image subset, ResNet-56 trained 5 epochs first (`bench_laasp_selection.measure`, `fixtures.py`).

After every section it rewrites ``OUT/summary.json`` and ``OUT/summary.md``, so a run cut short
still leaves what it measured. Without ``--data-root`` (and no ``../shared/data/cifar10-jpeg.zip``)
the image sections use synthetic CIFAR-shaped JPEGs, and the summary says so.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _say(lines: list[str]) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)
    return say


# ----------------------------------------------------------------------------- sections (child side)
def smoke_tests(args: argparse.Namespace) -> dict[str, Any]:
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                   if "pytest.mark.cuda" in p.read_text())
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files],
                          cwd=REPO, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    summary_line = next((line for line in reversed(output.splitlines())
                         if re.search(r"\d+ (passed|failed|skipped|errors?)\b", line)), "")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary_line)}
    return {"ok": proc.returncode == 0 and counts.get("passed", 0) > 0, "files": files, "counts": counts,
            "returncode": proc.returncode, "tail": _tail(output)}


def smoke_laasp(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.work) / "smoke_laasp"
    shutil.rmtree(out, ignore_errors=True)
    flags = ["run", "--pruner", "laasp", "--model", "resnet20", "--dataset", "digits", "--epochs", "3",
             "--prune-epoch", "1", "--target-flops", "0.3", "--step-scale", "3", "--recover-epoch", "1",
             "--recover-flop", "0.1", "--subset-size", "512", "--device", "cuda",
             "--quiet"]  # short: the recipe's recovery would add ~90 epochs
    proc = subprocess.run([sys.executable, "run_bench.py", *flags, "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"ok": False, "returncode": proc.returncode, "tail": _tail(proc.stdout + proc.stderr)}
    rec = json.loads((out / "record.json").read_text())
    return {"ok": bool(rec["target_reached"]) and rec["env"]["device"].startswith("cuda"),
            "command": "python run_bench.py " + " ".join(flags) + " --out DIR",
            "device": rec["env"]["device"], "device_name": rec["env"]["device_name"], "precision": rec["precision"],
            "top1": rec["final"]["top1"], "flops_reduction": rec["flops"]["reduction"], "steps": len(rec["trace"]),
            "epochs_trained": rec["epochs_trained"], "wall_time_s": rec["wall_time_s"],
            "selection_s": rec["timings"].get("selection_s")}


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    import bench_throughput

    log: list[str] = []
    workers = min(8, os.cpu_count() or 1)
    result = bench_throughput.measure(args.data_root, model="resnet56", images=10_000, batch_size=128,
                                      workers=workers, rounds=3, device="cuda", precision="auto", compiled=True,
                                      say=_say(log))
    return {"ok": True, **result,
            "command": f"python benchmarks/bench_throughput.py --model resnet56 --images 10000 --workers {workers} "
                       "--rounds 3 --device cuda --compile --data-root DATA"}


SWEEP_SPACE = """\
description: gpu_check, 4 trials sharing one GPU (--gpus-per-trial 0.25)
fixed:
  model: resnet20
  dataset: digits
  epochs: 4
  prune_epoch: 1
  target_flops: 0.3
pruners:
  laasp: {step_scale: 3.0, recover_epoch: 1, recover_flop: 0.1, subset_size: 512}
grid:
  pruner: [none, laasp, l1_uniform, fpgm]
"""


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    space, results = work / "gpu_sweep.yaml", work / "sweep"
    space.write_text(SWEEP_SPACE)
    shutil.rmtree(results, ignore_errors=True)
    flags = ["--gpus-per-trial", "0.25", "--cpus-per-trial", "2"]
    # Ray counts the GPUs it may hand out from CUDA_VISIBLE_DEVICES when it is set (no NVML needed)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "run_bench.py", "sweep", str(space), "--results-dir", str(results), *flags],
                          cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    records = [json.loads(p.read_text()) for p in sorted((results / "gpu_sweep" / "records").glob("*.json"))]
    trials = [{"trial": r.get("trial_id"), "pruner": r.get("pruner"), "status": r.get("status"),
               "device": (r.get("env") or {}).get("device"),
               "gpu_memory_fraction": (r.get("env") or {}).get("gpu_memory_fraction"),
               "top1": (r.get("final") or {}).get("top1"), "wall_time_s": r.get("wall_time_s"),
               "error": r.get("error")} for r in records]
    busy = sum(t["wall_time_s"] or 0 for t in trials)
    ok = (proc.returncode == 0 and len(trials) == 4
          and all(t["status"] == "ok" and str(t["device"]).startswith("cuda") for t in trials))
    return {"ok": ok, "returncode": proc.returncode, "trials": trials, "sweep_wall_s": wall,
            "sum_trial_wall_s": busy, "concurrency": busy / wall if wall else None,
            "command": "python run_bench.py sweep SPACE " + " ".join(flags), "space": SWEEP_SPACE,
            **({} if ok else {"tail": _tail(proc.stdout + proc.stderr)})}


def selection(args: argparse.Namespace) -> dict[str, Any]:
    import bench_laasp_selection

    log: list[str] = []
    result = bench_laasp_selection.measure(args.data_root, "resnet56", subset=10_000, steps=1,
                                           approx={}, seed=0, device="cuda", say=_say(log))
    return {"ok": True, **result,
            "command": "python benchmarks/bench_laasp_selection.py --model resnet56 --subset 10000 --steps 1 "
                       "--device cuda --data-root DATA"}


@dataclass(frozen=True)
class Section:
    name: str
    run: Callable[[argparse.Namespace], dict[str, Any]]
    cap_s: float   # the most it may take
    min_s: float   # not started with less time than this left


SECTIONS = (Section("smoke_tests", smoke_tests, 180, 30), Section("smoke_laasp", smoke_laasp, 120, 20),
            Section("throughput", throughput, 180, 30), Section("sweep", sweep, 180, 45),
            Section("selection", selection, 300, 60))


# ----------------------------------------------------------------------------- orchestration
def synthetic_cifar(root: Path, train: int = 10_000, test: int = 500, seed: int = 0) -> Path:
    """CIFAR-shaped JPEGs (32 px, 10 class folders): smooth colour fields plus noise, about the size
    of real CIFAR JPEGs, so the PIL pipeline decodes as much as it would. Timing only: no labels to learn."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "cifar10"
    for split, n in (("train", train), ("test", test)):
        for cls in CLASSES:
            (folder / split / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            base = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((32, 32), Image.BILINEAR)
            pixels = (np.asarray(base, dtype=np.float32) + rng.normal(0, 8, (32, 32, 3))).clip(0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / split / CLASSES[i % 10] / f"{i:05d}.jpg",
                                                          quality=90)
    return folder


def resolve_data(args: argparse.Namespace, work: Path) -> tuple[str, str]:
    """(data root for the children, how the summary describes it)."""
    if args.data_root:
        return args.data_root, f"given: {args.data_root}"
    for candidate in (REPO.parent / "shared" / "data" / "cifar10-jpeg.zip", REPO / "shared" / "data" / "cifar10-jpeg.zip"):
        if candidate.is_file():
            return str(candidate), "real CIFAR-10 (cifar10-jpeg.zip)"
    start = time.perf_counter()
    folder = synthetic_cifar(work / "synthetic")
    return str(folder), (f"synthetic CIFAR-shaped JPEGs (10,000 train / 500 test, 32 px, made in "
                         f"{time.perf_counter() - start:.0f} s): timings only, no real images were carried")


def machine() -> dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1), "gpus": torch.cuda.device_count(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "python": platform.python_version(), "cpus": os.cpu_count()}


def run_child(cmd: list[str], limit_s: float) -> tuple[int | None, str, float]:
    """Run ``cmd`` in its own process group; past ``limit_s`` kill the whole group. (rc or None, output, s)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=limit_s)
        return proc.returncode, output, time.perf_counter() - start
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return None, output, time.perf_counter() - start


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def orchestrate(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.budget_s
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_check-"))
    work.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": _git_commit(),
                               "machine": machine(), "budget_s": args.budget_s, "sections": {}}
    print(f"gpu_check: {summary['machine']['gpu']}, budget {args.budget_s:.0f} s, scratch in {work}", flush=True)
    data_root, summary["data"] = resolve_data(args, work)
    for section in SECTIONS:
        left = deadline - time.monotonic()
        if left < section.min_s:
            summary["sections"][section.name] = {"status": "skipped", "reason": f"{left:.0f} s of the budget left"}
            write_summary(out, summary)
            continue
        limit = min(section.cap_s, left)
        print(f"\n== {section.name} (at most {limit:.0f} s)", flush=True)
        result_file = work / f"{section.name}.json"
        result_file.unlink(missing_ok=True)
        rc, output, seconds = run_child([sys.executable, __file__, "--section", section.name, "--work", str(work),
                                         "--data-root", data_root, "--result", str(result_file)], limit)
        print(_tail(output, 12), flush=True)
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
        status = "timeout" if rc is None else ("ok" if rc == 0 and result.get("ok") else "failed")
        entry: dict[str, Any] = {"status": status, "seconds": round(seconds, 1), "limit_s": round(limit)}
        if result:
            entry["result"] = result
        if status != "ok" and "tail" not in result:
            entry["tail"] = _tail(output)
        summary["sections"][section.name] = entry
        write_summary(out, summary)
        print(f"{section.name}: {status} in {seconds:.0f} s: {_line(section.name, entry)}", flush=True)
    statuses = {name: s["status"] for name, s in summary["sections"].items()}
    print(f"\ngpu_check: {statuses}; summary in {out / 'summary.md'} and {out / 'summary.json'}", flush=True)
    return 0 if all(s == "ok" for s in statuses.values()) else 1


# ----------------------------------------------------------------------------- summary
def _line(name: str, entry: dict[str, Any]) -> str:
    r = entry.get("result") or {}
    if entry["status"] == "timeout" and not r:
        return f"stopped at its {entry['limit_s']} s limit (output: summary.json)"
    if entry["status"] != "ok" and not r:
        return entry.get("reason", "see the output tail in summary.json")
    if name == "smoke_tests":
        c = r.get("counts", {})
        return f"{c.get('passed', 0)} passed, {c.get('failed', 0)} failed, {c.get('skipped', 0)} skipped ({', '.join(r.get('files', []))})"
    if name == "smoke_laasp" and "top1" in r:
        return (f"top-1 {r['top1']:.2f}%, FLOPs -{100 * r['flops_reduction']:.1f}% in {r['steps']} steps, "
                f"{r['precision']['compute']} on {r['device_name']}, {r['wall_time_s']:.0f} s "
                f"(selection {r['selection_s'] or 0:.1f} s)")
    if name == "throughput" and "ours_img_s" in r:
        return (f"{r['model']}: ours {r['ours_img_s']:,.0f} img/s ({r['ours'].split(', ')[-1]}) vs DataLoader + PIL "
                f"{r['reference_img_s']:,.0f} img/s (fp32, {r['reference_workers']} workers): {r['speedup']:.2f}x"
                + ("" if "compiled_img_s" not in r else f"; compiled {r['compiled_img_s']:,.0f} img/s "
                   f"({r['compiled_vs_eager']:.2f}x eager, compilation ~{r['compile_s']:.0f} s)"))
    if name == "sweep" and "trials" in r:
        ok = sum(t["status"] == "ok" for t in r["trials"])
        shares = sorted({t["gpu_memory_fraction"] for t in r["trials"] if t["gpu_memory_fraction"] is not None})
        return (f"{ok}/{len(r['trials'])} trials ok on {', '.join(sorted({str(t['device']) for t in r['trials']}))}, "
                f"memory share {shares or '?'}; sweep {r['sweep_wall_s']:.0f} s wall for {r['sum_trial_wall_s']:.0f} s "
                f"of trials (concurrency {r['concurrency']:.2f}, Ray start-up included)")
    if name == "selection" and "exact_s" in r:
        return (f"{r['model']}, {r['subset']:,} images, {r['weights']} weights: authors' loop {r['reference_s']:.1f} s, "
                f"ours exact {r['exact_s']:.1f} s ({r['exact_speedup']:.1f}x), same pick {r['exact_equals_reference']}/"
                f"{r['steps']}, {r['per_step'][0]['candidates']} distinct candidates, {r['rows_per_forward']} rows per forward"
                + ("" if "approx_s" not in r else f"; approximate {r['approx_s']:.1f} s ({r['approx_speedup']:.1f}x, "
                   f"{r['race_label']}), same pick as exact "
                   f"{r['approx_equals_exact']}/{r['steps']}"))
    return "see summary.json"


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    m = summary["machine"]
    lines = [f"# GPU check, {summary['date']}", "",
             f"{m['gpu']} (compute capability {m['compute_capability']}, {m['gpu_memory_gib']} GiB), torch {m['torch']}, "
             f"CUDA {m['cuda']}, cuDNN {m['cudnn']}, Python {m['python']}, {m['cpus']} CPUs; commit {summary['commit']}; "
             f"budget {summary['budget_s']:.0f} s.", "", f"Data for the image sections: {summary.get('data', '?')}.", "",
             "| section | status | seconds | result |", "|---|---|---|---|"]
    for name, entry in summary["sections"].items():
        lines.append(f"| {name} | {entry['status']} | {entry.get('seconds', '')} | {_line(name, entry)} |")
    lines += ["", "Ours trains in the run's default precision (bf16 autocast where the GPU has it natively) with "
              "channels_last; the authors' pipeline in fp32, as their scripts do. LAASP's candidate losses are "
              "computed in true fp32 (TF32 off) in both loops. Commands: see `command` per section in summary.json; "
              "the whole check: `benchmarks/gpu_check.sh` (wheels: `benchmarks/gpu_wheels.sh`).", ""]
    (out / "summary.md").write_text("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "results" / "gpu"), help="where summary.md and summary.json go")
    p.add_argument("--work", help="scratch folder (default: a new temporary one)")
    p.add_argument("--data-root", help="CIFAR-10 folder or zip for the image sections (default: ../shared/data/"
                                       "cifar10-jpeg.zip if present, else synthetic JPEGs)")
    p.add_argument("--budget-s", type=float, default=480, help="all sections together (default 480 s)")
    p.add_argument("--section", choices=[s.name for s in SECTIONS], help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.section:  # a child: run one section, write its result
        result = {s.name: s for s in SECTIONS}[args.section].run(args)
        Path(args.result).write_text(json.dumps(result, indent=2, default=str))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
