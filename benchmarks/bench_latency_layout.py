#!/usr/bin/env python3
"""Re-measure the speed-up of a sweep's pruned checkpoints on a quiet machine, in both memory layouts.

Records measure latency inside each trial, in the run's layout (channels_last, also on CPU),
and in a concurrent sweep while other trials share the CPU. This script reloads the pruned
checkpoints of ``<folder>/trials/*/checkpoint.pt`` (kept locally, not committed), times each
against the unpruned architecture with `harness.job.latency.speedup` (alternating, median), once
in channels_last and once contiguous, and prints the speed-up at each batch size beside the
one the record holds.

    .venv/bin/python benchmarks/bench_latency_layout.py results/cifar10_cpu_small [--repeats 50] [--threads 1]

Check ``uptime`` first: other load moves these figures.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="a sweep's results folder, with trials/*/checkpoint.pt")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pattern", default="*", help="glob of trial names (default: all pruned trials)")
    args = p.parse_args()

    import torch

    from harness.job.checkpoint import load_checkpoint
    from harness.job.latency import speedup
    from harness.models import build_model

    torch.set_num_threads(args.threads)
    trials = sorted(Path(args.folder, "trials").glob(f"{args.pattern}/checkpoint.pt"))
    rows: dict[str, dict[str, list[float]]] = {}
    print(f"{'trial':40s} {'layout':14s} {'b1 now':>7s} {'b1 rec':>7s} {'b64 now':>8s} {'b64 rec':>8s}")
    for ckpt in trials:
        model, payload = load_checkpoint(ckpt)
        record = json.loads((ckpt.parent / "record.json").read_text()) if (ckpt.parent / "record.json").exists() else {}
        if record.get("pruner") is None:
            continue
        size, channels = record["data"]["image_size"], record["data"]["in_channels"]
        reference = build_model(payload["model"], payload["num_classes"], channels)
        recorded = record.get("latency") or {}
        for layout, channels_last in (("channels_last", True), ("contiguous", False)):
            s = speedup(model, reference, size, channels, "cpu", repeats=args.repeats, channels_last=channels_last)
            b1, b64 = s["batch_1"]["speedup"], s["batch_64"]["speedup"]
            rec1 = (recorded.get("batch_1") or {}).get("speedup", float("nan"))
            rec64 = (recorded.get("batch_64") or {}).get("speedup", float("nan"))
            print(f"{ckpt.parent.name:40s} {layout:14s} {b1:7.2f} {rec1:7.2f} {b64:8.2f} {rec64:8.2f}")
            group = rows.setdefault(f"{record['pruner']} {layout}", {"b1": [], "b64": []})
            group["b1"].append(b1)
            group["b64"].append(b64)
    print("\nmedian speed-up per pruner and layout (x):")
    for name, group in sorted(rows.items()):
        print(f"  {name:32s} batch 1 {statistics.median(group['b1']):5.2f}   batch 64 "
              f"{statistics.median(group['b64']):5.2f}   ({len(group['b1'])} checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
