"""The command line (``run_bench.py``), the top of the pipeline: nothing below imports it.

- `commands`: the command registry and the run flags built from `harness.job.options`
- `jobs`: train, eval, info, run
- `scratch`: scratch (Scratch-E / Scratch-B controls)
- `sweep`: sweep (and --resume)
- `results`: table, report, plots
- `main`: the parser and the ``error:`` line / exit-code contract
"""
from harness.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
