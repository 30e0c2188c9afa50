"""Peak memory of one exact LAASP selection step with each image's loss kept (what a race with a
confidence bound and ``bench_approx_frontier.py --save-losses`` do) against the same step without.

    python benchmarks/bench_kept_losses_memory.py --model resnet20 --images 2000 --chunk-size 100

Each variant runs in a fresh process (the allocator's state is part of what is measured), on the
same random-init network and random images: memory does not depend on the weights. Peak: the
highest resident-set size above the step's start, sampled every 2 ms (`bench_approx_frontier.PeakRSS`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("not kept", "kept")


def measure(args: argparse.Namespace, keep: bool) -> dict:
    from bench_approx_frontier import PeakRSS
    from harness.models import build_model
    from laasp.config import LAASPConfig
    from laasp.pruner import LAASP

    torch.manual_seed(args.seed)
    model = build_model(args.model, 10, 3).eval()
    g = torch.Generator().manual_seed(args.seed + 1)
    x, y = torch.randn(args.images, 3, 32, 32, generator=g), torch.randint(0, 10, (args.images,), generator=g)
    pruner = LAASP(model, LAASPConfig(target_flops=0.5, chunk_size=args.chunk_size), x, y, 32, 3)
    candidates = pruner.candidates()
    pruner.evaluator.keep_per_image = keep
    with PeakRSS(torch.device("cpu")) as mem:
        start = time.perf_counter()
        pruner.select(candidates)
        seconds = time.perf_counter() - start
    return {"kept": keep, "candidates": len(candidates), "peak_mb": mem.peak_mb, "s": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--chunk-size", type=int, default=100, help="images per chunk: more chunks, more to keep")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one measurement, in a child
    p.add_argument("--out", type=Path, help="also write kept_losses_memory.{md,json} here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.variant is not None:
        print(json.dumps(measure(args, args.variant == "kept")))
        return
    child = [sys.executable, __file__, *sys.argv[1:]]
    rows = [json.loads(subprocess.run([*child, "--variant", v], check=True, capture_output=True, text=True,
                                      cwd=REPO).stdout.splitlines()[-1]) for v in VARIANTS]
    how = (f"{args.model}, random init, {args.images} random 32x32 images in chunks of {args.chunk_size}, one exact "
           f"selection step ({rows[0]['candidates']} candidates), {args.threads} thread(s), each variant in a fresh "
           f"process. Command: python benchmarks/bench_kept_losses_memory.py --model {args.model} --images "
           f"{args.images} --chunk-size {args.chunk_size} --threads {args.threads}")
    table = ("| per-image losses | peak memory above start (MB) | step (s) |\n|---|---:|---:|\n"
             + "".join(f"| {v} | {r['peak_mb']:.0f} | {r['s']:.1f} |\n" for v, r in zip(VARIANTS, rows)))
    print(f"{how}\n\n{table}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "kept_losses_memory.md").write_text(f"# Peak memory with per-image losses kept\n\n{how}\n\n{table}")
        (args.out / "kept_losses_memory.json").write_text(json.dumps({"how": how, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
