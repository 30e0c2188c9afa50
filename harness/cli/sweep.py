"""``run_bench.py sweep``: run a search space (Ray Tune or serial), or resume one.

Kept free of heavy imports at module level: `harness.cli.commands` registers it at import time.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.commands import command

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPACE = REPO_ROOT / "search_spaces" / "quick.yaml"


def add_sweep_args(p: argparse.ArgumentParser) -> None:
    p.description = ("Run every trial of a search space (search_spaces/*.yaml) and write one record per trial "
                     "to <results-dir>/<name>/records/. Ctrl-C stops cleanly; --resume NAME continues.")
    p.add_argument("space", nargs="?", help=f"search space YAML (default: {DEFAULT_SPACE.relative_to(REPO_ROOT)})")
    p.add_argument("--resume", metavar="NAME", help="continue the interrupted sweep <results-dir>/NAME")
    p.add_argument("--name", help="sweep folder name (default: the YAML file's stem)")
    p.add_argument("--results-dir", default="results", help="where sweep folders go (default: results/)")
    p.add_argument("--executor", choices=("ray", "serial"), default=None,
                   help="ray (default: Ray Tune, local or --address) or serial (in-process, no Ray)")
    p.add_argument("--address", help="Ray cluster to join, e.g. auto or HEAD_IP:6379 (default: a local Ray)")
    p.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs per trial (default 1; also torch threads)")
    p.add_argument("--gpus-per-trial", type=float, default=None, help="GPUs per trial, fractions allowed (default 0)")
    p.add_argument("--max-concurrent", type=int, default=None, help="at most K trials at once (default: as resources allow)")
    p.add_argument("--workers-per-trial", type=int, default=None,
                   help="run each trial as N data-parallel processes on one machine (like run --workers N); they "
                        "share the trial's --cpus-per-trial (default N) and --gpus-per-trial (0, or N: one GPU each)")
    p.add_argument("--data-root", help="dataset folder or .zip for every trial (CIFAR, ImageNet, ImageFolder)")
    p.add_argument("--max-failures", type=int, default=None,
                   help="Ray: restart a trial whose worker process died (SIGKILL, a lost node) from its last "
                        "checkpoint at most N times (default 2); a trial that fails by itself is not retried")
    p.add_argument("--force", action="store_true",
                   help="with --resume: continue even though the original space file changed (the sweep keeps "
                        "running its own copy, space.yaml)")
    p.epilog = ("exit status: 0 every trial succeeded, 1 some trials failed (listed on the last line), "
                "2 bad input (nothing ran), 130 interrupted (resume with --resume NAME)")


def sweep_main(args: argparse.Namespace) -> int:
    from harness.errors import UserError
    from harness.sweep.runner import Resources, Sweep, run_sweep

    overrides = {"executor": args.executor, "address": args.address, "cpus_per_trial": args.cpus_per_trial,
                 "gpus_per_trial": args.gpus_per_trial, "max_concurrent": args.max_concurrent,
                 "max_failures": args.max_failures, "data_root": args.data_root,
                 "workers_per_trial": args.workers_per_trial}
    if args.resume:
        if args.space or args.name:
            raise UserError("--resume NAME continues a sweep from its own copy of the space; drop the SPACE "
                            "argument and --name")
        if args.max_concurrent is not None:
            import sys

            print("note: a Ray stage that had already started keeps its original --max-concurrent (Tune restores "
                  "it); stages that start now use the new value", file=sys.stderr)
        sweep = Sweep.resume(args.resume, args.results_dir, overrides, force=args.force)
    else:
        if args.force:
            raise UserError("--force goes with --resume NAME (a new sweep has nothing to force)")
        space = Path(args.space) if args.space else DEFAULT_SPACE
        workers = 1 if args.workers_per_trial is None else args.workers_per_trial
        resources = Resources(executor=args.executor or "ray", address=args.address,
                              cpus_per_trial=max(1.0, workers) if args.cpus_per_trial is None else args.cpus_per_trial,
                              gpus_per_trial=0.0 if args.gpus_per_trial is None else args.gpus_per_trial,
                              max_concurrent=args.max_concurrent,
                              max_failures=2 if args.max_failures is None else args.max_failures,
                              workers_per_trial=workers)
        sweep = Sweep.create(space, args.name, args.results_dir, resources, data_root=args.data_root)
    return run_sweep(sweep)


command("sweep", "run a search space of trials (Ray Tune or serial) or --resume one")((add_sweep_args, sweep_main))
