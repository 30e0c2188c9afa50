"""``run_bench.py scratch``: another run's final architecture trained from random initialisation
(Scratch-E / Scratch-B, `harness.job.scratch`)."""
from __future__ import annotations

import argparse
import dataclasses

from harness.cli.commands import GROUP_TITLES, add_option, command
from harness.cli.jobs import result_line, state_path
from harness.job.options import GROUPS, SCRATCH_EPOCH_OPTIONS, SCRATCH_INHERITED

# Default to the source run's value (None here), not the table's; the epoch flags are refused
# (the budget sets the epochs).
FROM_SOURCE = ("model", *SCRATCH_INHERITED)


def _scratch_parser(p: argparse.ArgumentParser) -> None:
    p.description = ("Train the final architecture of a pruned run from random initialisation (Liu et al., "
                     "Rethinking the Value of Network Pruning, ICLR 2019). Scratch-E trains the epochs the source "
                     "trained (E); Scratch-B trains round(E x FLOPs_unpruned / FLOPs_pruned) epochs (half up), the "
                     "unpruned network's compute. Options not given default to the source run's; learning-rate "
                     "milestones are the recipe's fractions of the new epoch count unless --milestones is given.")
    p.add_argument("--arch-from", required=True, metavar="RECORD_OR_CHECKPOINT",
                   help="the source: a run's record.json, a sweep's records/<trial>.json, or a run's checkpoint.pt")
    p.add_argument("--budget", required=True, metavar="{E,B}",
                   help="E: the source's epochs; B: its epochs x FLOPs_unpruned / FLOPs_pruned")
    for group in ("training", "data"):
        g = p.add_argument_group(GROUP_TITLES[group].replace("the authors' recipe", "the source run's, else the "
                                                                                    "recipe"))
        for o in GROUPS[group]:
            if o.name in SCRATCH_EPOCH_OPTIONS:
                g.add_argument(o.flag, default=None, help=argparse.SUPPRESS)  # refused with a clear error
                continue
            add_option(g, dataclasses.replace(o, default=None, required=False) if o.name in FROM_SOURCE else o)
        if group == "training":
            for o in GROUPS["output"]:
                add_option(g, o)


def _scratch(args: argparse.Namespace) -> int:
    from harness.job.run import run_job
    from harness.job.scratch import scratch_job_config

    options = {k: v for k, v in vars(args).items() if k not in ("arch_from", "budget", "command")}
    cfg = scratch_job_config(options, args.arch_from, args.budget)
    s = cfg.scratch
    print(f"scratch-{s.budget}[{s.source_group}] of {s.source}: {cfg.epochs} epochs (E = {s.source_epochs}, "
          f"FLOPs ratio {s.flops_ratio:.3f}), milestones {','.join(map(str, cfg.optim.milestones))}")
    record = run_job(cfg, state_path=state_path(cfg))
    print(result_line(record, cfg.out))
    return 0


command("scratch", "train a pruned run's final architecture from random initialisation (Scratch-E / Scratch-B)")(
    (_scratch_parser, _scratch))
