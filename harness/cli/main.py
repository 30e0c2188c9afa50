"""``run_bench.py``: parse the command line, run the command, and turn bad input into one
``error:`` line on stderr with exit code 2, before any training starts."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from harness.cli import jobs, results, scratch, sweep  # noqa: F401  (each registers its commands)
from harness.cli.commands import COMMANDS
from harness.errors import UserError
from harness.train.engine import TrainingDiverged


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_bench.py", description="LAASP pruning benchmark harness")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS.names():
        configure, _ = COMMANDS.get(name)
        configure(sub.add_parser(name, help=COMMANDS.meta(name)["help"]))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _, run = COMMANDS.get(args.command)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"error: training diverged ({exc}); lower --lr or check the data", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        hint = f"; rerun the same command to resume from {out}/state.pt" if out else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
