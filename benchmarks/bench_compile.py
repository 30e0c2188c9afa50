"""torch.compile against eager for the training step, in the same run, on the same batches.

    python benchmarks/bench_compile.py --model resnet20 --batches 30 --rounds 3

The training step is the engine's own (`harness.train.engine.train_epoch`) on real CIFAR-10
batches from the in-memory dataset (``--data-root``; digits when the data is absent). Eager and
compiled copies of the same network alternate in rounds (eager, compiled, eager, ...) so machine
noise hits both alike; compile time (the first compiled round's extra cost) is reported apart.
Prints images/s per round and the median ratio.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from harness.data import DataConfig, load_dataset
from harness.models import build_model
from harness.train.device import Precision
from harness.train.engine import OptimConfig, make_optimizer, train_epoch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    p.add_argument("--batches", type=int, default=30, help="batches per round")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    p.add_argument("--mode", default="default", help="torch.compile mode")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if Path(args.data_root).exists():
        data = load_dataset(DataConfig("cifar10", args.data_root, train_subset=args.batches * args.batch_size,
                                       test_subset=100), device)
    else:
        data = load_dataset(DataConfig("digits"), device)
    precision = Precision(device, amp=device.type == "cuda")
    eager = precision.prepare_model(build_model(args.model, data.num_classes, data.in_channels))
    compiled_net = copy.deepcopy(eager)
    compiled = torch.compile(compiled_net, mode=args.mode)
    cfg = OptimConfig(batch_size=args.batch_size)
    opts = {"eager": make_optimizer(eager, cfg), "compiled": make_optimizer(compiled_net, cfg)}
    models = {"eager": eager, "compiled": compiled}

    def timed(name: str, seed: int) -> float:
        batches = list(data.train_batches(args.batch_size, seed))[: args.batches]
        images = sum(len(y) for _, y in batches)
        start = time.perf_counter()
        train_epoch(models[name], batches, opts[name], 0.05, precision)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return images / (time.perf_counter() - start)

    start = time.perf_counter()
    first = timed("compiled", 0)  # includes compilation
    compile_s = time.perf_counter() - start
    rates: dict[str, list[float]] = {"eager": [], "compiled": []}
    for r in range(args.rounds):
        for name in ("eager", "compiled"):
            rates[name].append(timed(name, r + 1))
        print(f"round {r + 1}: eager {rates['eager'][-1]:.0f} img/s, compiled {rates['compiled'][-1]:.0f} img/s",
              flush=True)
    e, c = statistics.median(rates["eager"]), statistics.median(rates["compiled"])
    print(f"{args.model}, batch {args.batch_size}, {args.threads} threads, {device}: eager {e:.0f} img/s, "
          f"compiled {c:.0f} img/s ({c / e:.2f}x); first compiled round {first:.0f} img/s "
          f"(compilation included, {compile_s:.1f} s)")


if __name__ == "__main__":
    main()
