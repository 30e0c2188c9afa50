"""What soft filter masks really save once the network is pruned for good: the official SFP/FPGM
masks (every conv on its own, residual-tied ones too) against ours (a coupled group as one unit).

    python benchmarks/bench_soft_removal_flops.py [--models resnet20 resnet56 resnet110] [--pruned 0.4]

The SFP and FPGM scripts mask ``int(C x (1 - rate))`` filters of *every* conv, also the stem
and each block's last conv, whose outputs meet in the residual additions. A channel of the
residual stream can only be removed when every conv writing to it lost it, so after the
official masks only the block-internal channels (and the rare residual channels zeroed in every
writer) can go. This prints, per model, the FLOPs reduction (the harness's counter: conv and
linear MACs, our projection-shortcut ResNets) of:

- ``official, removable``: the official per-conv masks (lowest L2 of each conv, at init), with
  everything physically removable removed;
- ``ours``: the same pruned fraction per coupled group, the group masked as one unit (what
  ``sfp``/``fpgm`` do), all of it removed;
- the papers' own number for that rate, from their conv-only float formula (ResNet-56 at 40%
  pruned: 52.6%, docs/official_code_notes.md), for comparison.
"""
from __future__ import annotations

import argparse

import torch

from baselines.common import FlopsModel, coupled_groups, is_residual_tied
from harness.models import build_model
from harness.prune.criteria import filter_rows, lowest
from harness.prune.prunable import PrunableNetwork

PAPER = {("resnet20", 0.4): 54.0, ("resnet32", 0.4): 53.2, ("resnet56", 0.4): 52.6, ("resnet110", 0.4): 52.3}


def official_removable(net: PrunableNetwork, pruned: float) -> list[int]:
    """Per group: channels that every member's own L2 mask zeroes (what removal can take)."""
    counts = []
    for g in coupled_groups(net):
        zeroed = None
        for layer, idxs in g.members:
            n = int(layer.filters * pruned)
            mine = set(lowest(filter_rows(layer.module).norm(dim=1), n))
            root = {k for k, i in enumerate(idxs) if i in mine}
            zeroed = root if zeroed is None else zeroed & root
        counts.append(len(zeroed or ()))
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet32", "resnet56", "resnet110"])
    p.add_argument("--pruned", type=float, default=0.4, help="pruned fraction per conv (the scripts' 1 - rate)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print("| model | pruned per conv | official masks, removable (%) | residual channels removable | ours (%) | "
          "papers' formula (%) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.models:
        torch.manual_seed(args.seed)
        net = PrunableNetwork(build_model(name, 10, 3), 32, 3)
        groups = coupled_groups(net)
        model = FlopsModel(net, groups)
        official = official_removable(net, args.pruned)
        ours = [int(g.channels * args.pruned) for g in groups]
        tied = sum(c for g, c in zip(groups, official) if is_residual_tied(g))
        paper = PAPER.get((name, round(args.pruned, 6)))
        print(f"| {name} | {args.pruned:.2f} | {100 * (1 - model.flops(official) / model.current):.1f} | {tied} | "
              f"{100 * (1 - model.flops(ours) / model.current):.1f} | {'n/a' if paper is None else paper} |")


if __name__ == "__main__":
    main()
