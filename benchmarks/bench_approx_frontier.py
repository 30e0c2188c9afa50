"""The approximate-selection frontier, measured where it matters: trained weights, real data,
the steps of a real LAASP run, several loss-subset sizes.

    python benchmarks/bench_approx_frontier.py --model resnet20 --subsets 1000,2000 --steps 6

1. A trained network: ``--model`` trained ``--train-epochs`` on real CIFAR-10 (cached as a
   fixture under ``.cache/fixtures/``, outside git; regenerated when absent).
2. For each subset size, a LAASP run with exact selection on that network: at every step the
   candidates are scored exactly (the decision applied, so the run is the exact run), and every
   race setting (start fraction x eta x confidence bound) picks on fresh copies of the same
   candidates. Per setting: time, agreement with the exact pick, and the loss regret
   ``(exact loss of the race's pick - exact winner's loss) / exact winner's loss``.
3. The authors' loop (deep copy + re-trace + full forward per candidate) is timed on the first
   ``--reference-steps`` steps of each size; speed-ups against it use the median of those.
4. Peak memory of a selection step: the highest resident-set size above the step's start,
   sampled every 2 ms (CPU; coarse: memory the allocator kept from an earlier step is not seen
   again, so a later, smaller search can read 0), or CUDA's peak allocation above the start.

Writes ``frontier.md``, ``frontier.json`` and ``frontier.png`` to ``--out``. With
``--save-losses DIR`` the exact pass also keeps every candidate's loss on every image, and each
step's matrix goes to ``DIR`` (outside git: megabytes a step), for `simulate_races.py` to replay
any race on it, in many image orders, at no further forward cost.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from harness.data import DataConfig, load_dataset
from harness.errors import UserError
from harness.job.checkpoint import load_checkpoint
from harness.prune.flops import layer_flops
from laasp.config import LAASPConfig
from laasp.pruner import LAASP
from laasp.racing import RACE_PRECISIONS, RaceSettings, race
from laasp.reference import reference_select
from laasp.selection import Candidate

from fixtures import EPOCHS, TRAIN_SUBSET, trained_fixture
from frontier_records import losses_file

REPO = Path(__file__).resolve().parents[1]


class PeakRSS:
    """Peak resident memory above the start while the block runs (CPU), or CUDA's peak allocation."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb = device, 0.0

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self) -> "PeakRSS":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        self.base, self.top, self.running = self._rss_mb(), self._rss_mb(), True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.top = max(self.top, self._rss_mb())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 - self.base
            return
        self.running = False
        self.thread.join()
        self.peak_mb = max(self.top, self._rss_mb()) - self.base


def settings_grid(args: argparse.Namespace) -> list[RaceSettings]:
    confidences = [None if c == "none" else float(c) for c in args.confidences.split(",")]
    starts = [None if s == "default" else float(s) for s in args.start_fractions.split(",")]
    return [RaceSettings(s, int(e), c, precision) for s, e, c, precision in itertools.product(
        starts, args.etas.split(","), confidences, args.precisions.split(","))]




def measure_size(args, checkpoint: Path, data, n: int, settings: list[RaceSettings], device,
                 save=lambda size: None, earlier: dict | None = None) -> dict:
    """One subset size over ``args.steps`` steps; ``save`` gets the size measured so far after
    every step (a 10,000-image size runs for hours: an interrupted run keeps its steps). A step
    whose losses ``--save-losses`` already holds is not measured again: its saved pick is applied,
    and its row comes from ``earlier`` (this size in the frontier.json being resumed), if there."""
    earlier = earlier or {}
    model, _ = load_checkpoint(checkpoint)
    model = model.to(device)
    x, y = data.loss_subset(n, seed=args.seed if args.subset_seed is None else args.subset_seed)
    cfg = LAASPConfig(target_flops=0.9, step_scale=args.step_scale, selection="exact", chunk_size=args.chunk_size,
                      seed=args.seed)
    pruner = LAASP(model, cfg, x, y, data.image_size, data.in_channels)
    subset_sha = subset_digest(x, y)
    steps, ref_times = [], list(earlier.get("reference_s", []))
    for step in range(1, args.steps + 1):
        saved = None if args.save_losses is None else losses_file(Path(args.save_losses), n, step)
        if saved is not None and saved.exists():  # measured by an earlier run: take its pick, skip its hours
            replay_saved_step(pruner, saved, subset_sha)
            steps += [row for row in earlier.get("steps", []) if row["step"] == step]
            print(f"  n={n} step {step}: replayed from {saved.name}, FLOPs -{100 * pruner.reduction():.1f}%",
                  flush=True)
            continue
        if step <= args.reference_steps:
            t = time.perf_counter()
            reference_select(pruner)
            ref_times.append(time.perf_counter() - t)
        candidates = pruner.candidates()
        if not candidates:
            break
        pruner.evaluator.keep_per_image = args.save_losses is not None
        with PeakRSS(device) as mem:
            t = time.perf_counter()
            winner = pruner.select(candidates)
            exact_s = time.perf_counter() - t
        exact_loss = {c.removal: c.loss for c in candidates}
        row = {"step": step, "candidates": len(candidates), "exact_s": exact_s, "exact_peak_mb": mem.peak_mb,
               "winner_loss": winner.loss, "races": []}
        extra = {}
        if args.bf16_losses:
            extra = bf16_pass(pruner, candidates, exact_s)
            row["exact_bf16_s"] = extra["exact_bf16_s"]
        if saved is not None:
            save_losses(saved, pruner, candidates, winner, subset_sha, extra)
        for s in settings:
            pool = [Candidate(c.removal, c.sources) for c in candidates]
            with PeakRSS(device) as rmem:
                t = time.perf_counter()
                pick = race(pruner.evaluator, pool, s)
                race_s = time.perf_counter() - t
            regret = (exact_loss[pick.removal] - winner.loss) / winner.loss
            row["races"].append({"settings": s.__dict__, "first_round": s.first_round(n), "s": race_s,
                                 "agrees": pick.removal == winner.removal, "regret": regret, "peak_mb": rmem.peak_mb})
        pruner.apply(winner, candidates, exact_s)
        steps.append(row)
        save({"subset": n, "reference_s": ref_times, "steps": steps})
        print(f"  n={n} step {step}: {len(candidates)} candidates, exact {exact_s:.2f}s, FLOPs -"
              f"{100 * pruner.reduction():.1f}%", flush=True)
    return {"subset": n, "reference_s": ref_times, "steps": steps}


def subset_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    """Which loss subset a saved step was measured on: a resumed run must be on the same one."""
    h = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def replay_saved_step(pruner: LAASP, path: Path, subset_sha: str) -> None:
    """Apply the exact pick saved at ``path`` to ``pruner``, as the run that measured it did."""
    saved = torch.load(path, weights_only=True)
    candidates = pruner.candidates()
    sources = [[list(s) for s in c.sources] for c in candidates]
    if saved.get("subset_sha256", subset_sha) != subset_sha or sources != saved["sources"]:
        raise UserError(f"{path} was measured on another loss subset or network than this run's (model, "
                        "--seed, --subset-seed and fixture must match); pass a new --save-losses folder")
    winner = candidates[saved["winner"]]
    for c, losses in zip(candidates, saved["losses"]):
        c.loss_sum, c.images = float(losses.sum()), len(losses)
    pruner.apply(winner, candidates)


def bf16_pass(pruner: LAASP, candidates: list[Candidate], exact_s: float) -> dict:
    """Every candidate on the whole subset again, forwards under bfloat16 autocast: its per-image
    losses (what a bf16 screening race would read) and its time beside the fp32 pass's."""
    evaluator = pruner.evaluator
    pool = [Candidate(c.removal, c.sources) for c in candidates]
    evaluator.keep_per_image, evaluator.autocast_dtype = True, torch.bfloat16
    try:
        t = time.perf_counter()
        evaluator.losses(pool)
        bf16_s = time.perf_counter() - t
    finally:
        evaluator.keep_per_image, evaluator.autocast_dtype = False, None
    return {"losses_bf16": torch.stack([torch.cat(c.per_image) for c in pool]), "exact_s": exact_s,
            "exact_bf16_s": bf16_s}


def save_losses(path: Path, pruner: LAASP, candidates: list[Candidate], winner: Candidate,
                subset_sha: str | None = None, extra: dict | None = None) -> None:
    """The exact pass's (candidates x images) float64 losses, in subset order, and what a candidate
    costs per image: the conv/linear MACs of the stages it re-runs (`simulate_races.py`)."""
    evaluator = pruner.evaluator
    evaluator.keep_per_image = False
    per_module = layer_flops(pruner.model, pruner.net.input_size, pruner.net.in_channels)
    stage_macs = [0] * len(evaluator.stages)
    for name, module in pruner.model.named_modules():
        if name in per_module:
            stage_macs[evaluator.stage_of.get(module, 0)] += per_module[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"losses": torch.stack([torch.cat(c.per_image) for c in candidates]),
                "suffix_macs": torch.tensor([sum(stage_macs[c.first_stage:]) for c in candidates]),
                "winner": candidates.index(winner), "sources": [[list(s) for s in c.sources] for c in candidates],
                "subset_sha256": subset_sha, **(extra or {})},
               path)
    for c in candidates:
        c.per_image.clear()


def resumable_sizes(frontier_json: Path, how: str) -> dict[int, dict]:
    """The sizes measured by an earlier run of the same setup (up to its ``--steps``) into the same
    ``--out``, by subset size: a resumed run keeps their rows for the steps it replays."""
    if not frontier_json.exists():
        return {}
    earlier = json.loads(frontier_json.read_text())
    def setup(text: str) -> str:
        return re.sub(r"up to \d+ steps|--steps \d+", "", text)

    if setup(earlier["how"]) != setup(how):
        return {}
    return {size["subset"]: size for size in earlier["sizes"]}


def summarise(sizes: list[dict], settings: list[RaceSettings]) -> list[dict]:
    rows = []
    for size in sizes:
        ref = statistics.median(size["reference_s"]) if size["reference_s"] else None
        exact = statistics.median(s["exact_s"] for s in size["steps"])
        rows.append({"subset": size["subset"], "steps": len(size["steps"]), "method": "exact",
                     "speedup_vs_authors": ref / exact if ref else None,
                     "median_s": exact, "agreement": 1.0, "median_regret": 0.0, "max_regret": 0.0,
                     "peak_mb": max(s["exact_peak_mb"] for s in size["steps"])})
        for i, s in enumerate(settings):
            races = [st["races"][i] for st in size["steps"]]
            med = statistics.median(r["s"] for r in races)
            rows.append({"subset": size["subset"], "steps": len(races), "method": s.describe(),
                         "speedup_vs_authors": ref / med if ref else None, "median_s": med,
                         "agreement": sum(r["agrees"] for r in races) / len(races),
                         "median_regret": statistics.median(r["regret"] for r in races),
                         "max_regret": max(r["regret"] for r in races), "peak_mb": max(r["peak_mb"] for r in races)})
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    head = ("| subset | steps | method | speed-up vs authors (x) | median step (s) | agreement | median regret (%) "
            "| max regret (%) | peak memory (MB) |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|\n")
    def speedup(r: dict) -> str:
        return "n/a" if r["speedup_vs_authors"] is None else f"{r['speedup_vs_authors']:.1f}"

    body = "".join(
        f"| {r['subset']} | {r['steps']} | {r['method']} | {speedup(r)} | {r['median_s']:.2f} | "
        f"{100 * r['agreement']:.0f}% | {100 * r['median_regret']:.3f} | {100 * r['max_regret']:.3f} | "
        f"{r['peak_mb']:.0f} |\n" for r in rows)
    return (f"# Approximate selection frontier\n\n{meta['how']}\n\n" + head + body)


def plot(rows: list[dict], path: Path) -> None:
    from harness.results.figures import new_figure

    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    for k, n in enumerate(sorted({r["subset"] for r in rows})):
        pts = [r for r in rows if r["subset"] == n and r["speedup_vs_authors"] is not None]
        ax.scatter([r["speedup_vs_authors"] for r in pts], [100 * r["agreement"] for r in pts], color=f"C{k}",
                   label=f"subset {n}")
    ax.axvline(20, color="gray", ls=":", label="goal: 20x")
    ax.axhline(95, color="gray", ls="--", label="goal: 95% agreement")
    ax.set_xscale("log")
    ax.set_xlabel("speed-up over the authors' loop (x, median step)")
    ax.set_ylabel("picks equal to exact selection (%)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, metadata={"Software": None})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    p.add_argument("--train-epochs", type=int, default=EPOCHS)
    p.add_argument("--train-subset", type=int, default=TRAIN_SUBSET)
    p.add_argument("--subsets", default="1000,2000,5000,10000", help="loss-subset sizes")
    p.add_argument("--steps", type=int, default=6, help="pruning steps measured per subset size")
    p.add_argument("--step-scale", type=float, default=1.0, help="LAASP FLOPs step (%% of baseline FLOPs)")
    p.add_argument("--reference-steps", type=int, default=1, help="steps on which the authors' loop is timed")
    p.add_argument("--start-fractions", default="0.0625,0.125",
                   help="shares of the subset in round 1; 'default' is LAASP's first round in images")
    p.add_argument("--etas", default="2,3,4")
    p.add_argument("--confidences", default="none,0.99")
    p.add_argument("--precisions", default="fp32", help="the races' forwards: fp32 and/or bf16 (laasp.racing)")
    p.add_argument("--chunk-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset-seed", type=int, default=None,
                   help="draw the loss subset with this seed instead of --seed (another run on the same fixture)")
    p.add_argument("--out", default="results/approx_frontier")
    p.add_argument("--save-losses", default=None, metavar="DIR",
                   help="keep each step's per-image candidate losses here (outside git) for simulate_races.py")
    p.add_argument("--bf16-losses", action="store_true",
                   help="also score every candidate under bfloat16 autocast, timed, and save those losses "
                        "(needs --save-losses): simulate_races.py --race-losses bf16 replays races on them")
    args = p.parse_args()
    if set(args.precisions.split(",")) - set(RACE_PRECISIONS):
        raise UserError(f"--precisions takes a comma-separated subset of {','.join(RACE_PRECISIONS)} "
                        f"(got {args.precisions})")
    if args.bf16_losses and args.save_losses is None:
        raise UserError("--bf16-losses saves a second loss matrix: pass --save-losses DIR too")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    checkpoint = trained_fixture(args.data_root, args.model, args.train_epochs, args.train_subset, args.seed,
                                 args.device)
    data = load_dataset(DataConfig("cifar10", args.data_root, train_subset=max(map(int, args.subsets.split(","))),
                                   test_subset=100), device)
    settings = settings_grid(args)
    how = (f"{args.model} trained {args.train_epochs} epochs on {args.train_subset} real CIFAR-10 images (seed "
           f"{args.seed}); LAASP exact run, FLOPs step {args.step_scale}%, all four criteria; up to {args.steps} steps per "
           f"subset size (column steps: those measured); authors' loop timed on the first {args.reference_steps} step(s); {args.threads} threads on "
           f"{args.device}. Command: python benchmarks/bench_approx_frontier.py --model {args.model} --subsets "
           f"{args.subsets} --steps {args.steps} --train-epochs {args.train_epochs} --train-subset "
           f"{args.train_subset} --start-fractions {args.start_fractions} --etas {args.etas} --confidences "
           f"{args.confidences} --threads {args.threads}"
           + ("" if args.precisions == "fp32" else f" --precisions {args.precisions}")
           + ("" if args.subset_seed is None else f" --subset-seed {args.subset_seed}")
           + (" --bf16-losses" if args.bf16_losses else ""))
    out = REPO / args.out
    out.mkdir(parents=True, exist_ok=True)
    earlier = resumable_sizes(out / "frontier.json", how)
    sizes: list[dict] = []

    def save(measured: list[dict]) -> None:
        rows = summarise(measured, settings)
        (out / "frontier.md").write_text(markdown(rows, {"how": how}))
        (out / "frontier.json").write_text(json.dumps({"how": how, "rows": rows, "sizes": measured}, indent=1,
                                                      default=lambda o: None))
        plot(rows, out / "frontier.png")

    for n in args.subsets.split(","):  # written after every step: a long run keeps what it measured
        sizes.append(measure_size(args, checkpoint, data, int(n), settings, device,
                                  save=lambda size: save([*sizes, size]), earlier=earlier.get(int(n))))
    if (out / "frontier.md").exists():
        print((out / "frontier.md").read_text())


def entry() -> None:
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    entry()
