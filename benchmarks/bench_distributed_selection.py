"""Time LAASP's exact selection step with its candidates split across data-parallel ranks
(`laasp.split`), against one process, on the same network and loss subset.

    python benchmarks/bench_distributed_selection.py --model resnet20 --subset 256 --steps 3
    python benchmarks/bench_distributed_selection.py --model resnet56 --workers 1,2,4 --threads 1

Each configuration times ``steps`` selections (candidates, exact losses, pick; nothing removed, so
every step scores the same network) after one warm-up step, and checks that the ranks' pick and
losses equal one process's. ``--threads`` is the torch threads of each process: compare ``1 x 2
threads`` with ``2 workers x 1 thread`` for the same cores. Random-init weights with non-trivial
batch norms; CIFAR-size random images (the timing does not depend on the pixels).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from harness.train.distributed import SINGLE, World  # noqa: E402


def _setup(model_name: str, subset: int, world: World):
    from harness.models import build_model
    from laasp.config import LAASPConfig
    from laasp.pruner import LAASP

    torch.manual_seed(0)
    model = build_model(model_name, 10, 3).to(memory_format=torch.channels_last)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.normal_(1, 0.2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(subset, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (subset,), generator=g)
    cfg = LAASPConfig(target_flops=0.5, subset_size=subset, chunk_size=min(256, subset))
    return LAASP(model.eval(), cfg, x, y, 32, 3, world=world)


def time_selection(model_name: str, subset: int, steps: int, world: World = SINGLE) -> dict[str, Any]:
    """Warm-up step, then ``steps`` timed selections on every rank (collectives included)."""
    pruner = _setup(model_name, subset, world)
    times, cpu, result = [], [], None
    for k in range(steps + 1):
        world.barrier()
        start, start_cpu = time.perf_counter(), time.process_time()
        candidates = pruner.candidates()
        winner = pruner.evaluator.exact(candidates)
        if k:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        result = {"pick": winner.sources[0], "losses": [c.loss for c in candidates], "candidates": len(candidates)}
    # CPU seconds of this process (rank 0): its share of the work, whatever else loads the machine
    return {**result, "median_s": statistics.median(times), "times_s": times, "cpu_s": statistics.median(cpu)}


def _rank(model_name: str, subset: int, steps: int, world: World) -> None:
    time_selection(model_name, subset, steps, world)


def measure(model_name: str, subset: int, steps: int, workers: list[int], threads: int, say=print) -> list[dict]:
    from harness.job.launch import run_data_parallel

    rows, alone = [], None
    for n in workers:
        torch.set_num_threads(threads * n)  # the launcher gives each of its n ranks 1/n of them
        if n == 1:
            r = time_selection(model_name, subset, steps)
        else:
            r = run_data_parallel(n, "cpu", lambda w: time_selection(model_name, subset, steps, w), _rank,
                                  (model_name, subset, steps))
        alone = alone or r
        same = r["pick"] == alone["pick"] and r["losses"] == alone["losses"]
        rows.append({"workers": n, "threads_per_worker": threads, "median_s": r["median_s"], "times_s": r["times_s"],
                     "rank0_cpu_s": r["cpu_s"], "candidates": r["candidates"], "same_as_one_process": same,
                     "speedup": alone["median_s"] / r["median_s"]})
        say(f"{model_name}, subset {subset}, {r['candidates']} candidates: {n} worker(s) x {threads} thread(s): "
            f"{r['median_s']:.2f} s per step (median of {steps}; {alone['median_s'] / r['median_s']:.2f}x one "
            f"process), rank 0 busy {r['cpu_s']:.2f} CPU s, pick and losses {'==' if same else '!='} one process")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--subset", type=int, default=256, help="images in the loss subset")
    p.add_argument("--steps", type=int, default=3, help="timed selections per configuration (after one warm-up)")
    p.add_argument("--workers", default="1,2", help="comma-separated process counts")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    rows = measure(args.model, args.subset, args.steps, [int(w) for w in args.workers.split(",")], args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
