"""Sweeps: many runs of `harness.job.run_job` from one YAML search space.

- `harness.sweep.space`: the YAML schema (validated with line numbers), grid plans and the
  Optuna define-by-run space; trial options become `JobConfig`s through the CLI's own code.
- `harness.sweep.trainable`: one trial (record, failure record, resume from ``state.pt``), the
  Ray function trainable wrapping it, and the serial (Ray-free) executor.
- `harness.sweep.runner`: the sweep folder, stages (grid, matched-budget grid, Optuna search,
  repeated seeds of the winners), Tuner construction and ``Tuner.restore``.
- `harness.sweep.cli`: ``run_bench.py sweep``.

The core (`harness.job`) never imports Ray: only `runner` and the Ray trainable do, lazily.
"""
