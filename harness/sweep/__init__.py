"""Sweeps: many runs of `harness.job.run.run_job` from one YAML search space.

In the order a sweep uses them:
- `yaml_lines`: YAML that keeps line numbers, so every error names ``file:line``
- `options`: trial options checked against the run options table (`harness.job.options`)
- `search`: the ``search:`` section (objectives, sampler, ASHA, searched parameters)
- `space`: the whole space file (`load_space`) and the `Space` / `Trial` it yields
- `sampler`: the Optuna define-by-run space
- `plan`: grid plans, LAASP-matched budgets, every trial's `JobConfig` checked up front
- `trainable`: one trial (record, failure record, resume from ``state.pt``), Ray-free core
- `faults`: ``LAASP_FAULT`` kill points for the fault-injection tests
- `lock`: one sweep process per folder, one process per trial (``flock``)
- `asha`: ASHA early stopping, the same in both executors, rebuilt from records
- `study`: the Optuna study (``optuna.db``) reconciled with the records after any crash
- `folder`: the sweep folder, its stages, the checks that refuse a changed space or plan
- `runner`: running the stages, exit status; `serial`: the in-process executor; `ray_executor`:
  the Ray Tune executor (imported only when used)

The core (`harness.job`) never imports Ray: only `ray_executor` and the Ray trainable do.
"""
